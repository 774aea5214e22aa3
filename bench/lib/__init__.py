"""Shared parts of the pgherd benches: processes, PostgreSQL access, the two clusters, stats."""
