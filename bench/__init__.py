"""Benchmarks of Enrolink that print ratios against the physical limit of PostgreSQL.

Run ``python -m bench --help``. Benchmarks are not tests: they report figures and never assert
timings.
"""
