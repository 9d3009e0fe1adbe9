"""What a store raises when it cannot do what was asked. `StoreError` and `StoreWriteError` are defined in
`watcher.core.storehealth`, so that the rooms below the store (the delivery worker) can tell them from bugs."""

from __future__ import annotations

from watcher.core.storehealth import StoreError, StoreWriteError

__all__ = ["BatchRolledBackError", "LeaseLostError", "StoreError", "StoreWriteError"]


class LeaseLostError(StoreError):
    """A replica tried to commit a job whose lease it no longer holds (fencing): nothing was written."""


class BatchRolledBackError(StoreError):
    """A commit made in a rule-state section shared with other turns of its process (`SharedRuleState`) was rolled
    back with the section, for another turn's failure (a lease lost, an error): nothing of it was written."""
