"""The nightly pipeline: Airflow assets and tasks, the runner behind `c360 nightly`, dbt (transform), the DuckDB
warehouse, model training/scoring in Spark child processes (modeling), drift monitoring and the run report.

Imports the lower layers (c360.config, c360.storage, c360.ingest, spark_jobs, ml); never c360.cli or c360dev.
"""
