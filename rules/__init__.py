"""benchwatch's rules: which events reach whom; depends only on `watcher`'s vocabulary."""
