"""Spark entry points: `python -m spark_jobs.train` (training) and `python -m spark_jobs.models` (registry operations)."""
