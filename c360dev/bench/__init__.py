"""Benchmarks and offline evaluations (development only): `c360 bench` (nightly.py, runner.py), model quality
against the generator's oracles (quality.py), scoring throughput (scoring.py), destination sync (sync.py), the
identity graph (identity.py) and the real public data sets behind `c360 real-data` (real_data.py). The `python -m
c360dev.bench.<module>` entry points are development scripts, not `c360` commands; docs/benchmarks.md.
"""
