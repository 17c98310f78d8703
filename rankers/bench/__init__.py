"""Benchmark drivers behind the thin scripts/bench_*.py entry points."""
