"""Starts the whole suite on loopback (`make run`, `cbctl up`, `python -m services.launcher`)."""
