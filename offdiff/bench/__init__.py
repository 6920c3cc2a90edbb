"""Benchmarks of the suite itself: `offdiff bench speed` (steps/s, actions/s, peak memory per algorithm)."""
