"""Evaluation harnesses shared by `dilm eval` and `benchmarks/`."""
