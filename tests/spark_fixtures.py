"""One local SparkSession for the whole test session (pytest plugin: `pytest_plugins = ["tests.spark_fixtures"]`).

Two cores, one shuffle partition, no UI: the tests use tiny inline DataFrames, so the JVM start-up
(~5 s) is the main cost and is paid once.
"""

from __future__ import annotations

import logging

import pytest


@pytest.fixture(scope="session")
def spark():
    from spark_jobs.common import build_spark

    session = build_spark("c360-tests", "local[2]", shuffle_partitions=1,
                          extra_conf={"spark.default.parallelism": "2",
                                      "spark.sql.adaptive.enabled": "false"})
    yield session
    session.stop()
    # py4j logs from object finalizers at interpreter exit, after pytest closed its streams: keep it quiet
    logging.getLogger("py4j").setLevel(logging.ERROR)
