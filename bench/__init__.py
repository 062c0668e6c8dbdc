"""Benchmarks. Each module exposes `run() -> Section`; `python -m bench` writes docs/BENCHMARKS.md.

Every number is reported as a ratio against a baseline measured in the same run: the CPU speed
of these machines drifts by several times over minutes, so absolute times are only indicative.
"""
