"""Dragonfly: monitoring of every VM through its cb-agent (collectors, storage, queries, health)."""
