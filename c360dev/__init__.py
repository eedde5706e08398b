"""Development-only tools, not part of the runtime: the synthetic shop generator (c360dev.generate) and the
benchmarks (c360dev.bench). Only the command line (c360.cli) imports this package; the pipeline, spark_jobs, ml and
the DAGs never do, so a production install can leave it out.
"""
