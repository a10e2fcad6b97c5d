"""Benchmark harness: ``python -m benchmarks SCENARIO``."""
