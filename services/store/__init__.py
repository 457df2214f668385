"""Typed records in etcd: one key holds one binary protobuf message."""

from services.store.election import Election
from services.store.etcd import Lease, Page, Store, Versioned, WatchEvent

__all__ = ["Election", "Lease", "Page", "Store", "Versioned", "WatchEvent"]
