"""Benchmarks: commands that print figures (not timed tests)."""
