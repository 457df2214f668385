"""CloudTwin: a cloud emulator with its own small gRPC cloud API.

The spider `mock` driver calls it the way the `aws` driver calls EC2. It plays
any number of providers with regions at real coordinates, a catalog that is
deterministic from a seed, resources whose states move with configured
latencies (computed lazily from timestamps, so idle VMs cost nothing), quotas,
throttling, injected failures and a state file that survives restarts.

Run it with `python -m spider.cloudtwin.server` (console script `cb-cloudtwin`).
"""
