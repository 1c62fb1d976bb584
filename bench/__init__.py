"""Benchmarks and helpers that write test inputs (official-layout weight files)."""
