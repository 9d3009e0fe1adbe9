"""`benchwatch test FILE...`: rule unit tests — recorded snapshots through the config's rules on the recording's
clock, exactly as `replay` (and so `run`) routes them, and what was sent checked against what was expected."""
