"""The running process: tracker, poll cycle, service, delivery wiring, status server, metrics, logs."""
