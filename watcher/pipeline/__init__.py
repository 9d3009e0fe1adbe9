"""The pipeline the service and the CLI share: observe a snapshot, diff it, route it, commit it (the tracker),
and what it keeps and compares on the way (archive, baseline, comparer, runtime silences, recordings, samples)."""
