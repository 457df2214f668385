"""What dragonfly and its agents say to each other: subjects, the wire encoding, the user-data
that configures an agent, metric groups, benchmark requests and reports, workload specs.

Both sides import this package; neither imports the other. It holds no runtime (no NATS
connection, no process): only names, formats, limits and their checks.
"""
