"""The pure core: diff, timers (stalls, vanished jobs) and summaries — plain functions, no I/O, no clock."""
