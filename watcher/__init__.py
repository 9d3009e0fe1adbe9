"""benchwatch's watcher: the API vocabulary, the client, the simulator and the process wiring."""
