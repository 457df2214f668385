"""The controller's decisions: pure functions of what it read, unit-tested as tables.

`model` holds the plain values they take and give; `placement` picks a VM and a port for an
instance; `rollout` the next step of a rollout and of the quality loop; `analysis` judges a
canary's traffic; `scaling` the instance count and when to grow the MCIS.
"""
