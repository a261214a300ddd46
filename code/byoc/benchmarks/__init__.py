"""Benchmarks behind `make bench-*` (results and commands in BENCHMARKS.md)."""
