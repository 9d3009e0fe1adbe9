"""What a store raises when it cannot do what was asked. `StoreError` and `StoreWriteError` are defined in
`watcher.core.storehealth`, so that the rooms below the store (the delivery worker) can tell them from bugs."""

from __future__ import annotations

from watcher.core.storehealth import StoreError, StoreWriteError

__all__ = ["LeaseLostError", "StoreError", "StoreWriteError"]


class LeaseLostError(StoreError):
    """A replica tried to commit a job whose lease it no longer holds (fencing): nothing was written."""
