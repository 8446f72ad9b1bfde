"""Benchmarks: each ``bench/NAME.py`` has ``run(argv: list[str]) -> dict`` of named figures.

Run one with ``qkdnode bench NAME [options] --json``; figures and commands go to docs/BENCHMARKS.md.
"""
