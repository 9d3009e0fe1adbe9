"""benchwatch's notifiers: how notifications are delivered; depends only on `watcher`'s vocabulary."""
