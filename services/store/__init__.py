"""Typed records in etcd: one key holds one binary protobuf message."""

from services.store.election import Election
from services.store.etcd import Creation, Lease, Page, Store, Versioned, WatchEvent
from services.store.informer import Entry, Informer

__all__ = ["Creation", "Election", "Entry", "Informer", "Lease", "Page", "Store", "Versioned", "WatchEvent"]
