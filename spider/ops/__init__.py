"""What is particular to each kind of resource: validation, references, verbs.

The shared lifecycle is in spider.resources; these modules only add what differs.
"""
