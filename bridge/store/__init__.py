"""Envelope stores: RAM (default) and SQLite (opt-in), one interface (``Store``)."""

from bridge.store.index import SortedIndex, Store
from bridge.store.memory import MemoryStore
from bridge.store.sqlite import SQLiteStore

__all__ = ["MemoryStore", "SQLiteStore", "SortedIndex", "Store"]
