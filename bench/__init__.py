"""Benchmark helpers that live outside the c360 package (reference implementations to compare the pipeline with)."""
