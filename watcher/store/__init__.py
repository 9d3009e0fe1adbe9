"""The store: the watcher's durable memory — job state and every event — behind one small async interface."""

from watcher.store.base import DeliveryAttempt, NamespacedState, OutboxItem, StateRow, Store, StoredEvent
from watcher.store.sqlite import SQLiteStore

__all__ = ["DeliveryAttempt", "NamespacedState", "OutboxItem", "SQLiteStore", "StateRow", "Store", "StoredEvent"]
