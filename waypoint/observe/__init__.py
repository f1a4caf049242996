"""Observability: what a running waypoint process reports (metrics today)."""
