"""What a store raises when it cannot do what was asked."""

from __future__ import annotations


class StoreError(Exception):
    """The database cannot be used (newer schema, not a benchwatch database, unreadable)."""
