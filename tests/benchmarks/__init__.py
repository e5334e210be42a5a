"""Measurements, not tests: ``python -m tests.benchmarks`` (``make bench``) runs every bench_*.py."""
