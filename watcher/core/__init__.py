"""The vocabulary every package speaks: API models, snapshots, events, memories, notifications — types only."""
