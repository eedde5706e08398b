"""c360dev.spark_sql_check, the gauge of the dbt models' distance from Spark SQL (issue #16): what Spark's parser
rejects is reported with the model and the line, what it accepts is not."""

from __future__ import annotations

from c360dev.spark_sql_check import check, spark_sql

DUCKDB_ONLY = """select
    customer_id,
    orders.* exclude (customer_id)
from "c360"."feature_store_work"."fs_customer_orders_asof" as orders"""


def test_three_part_duckdb_names_become_spark_names():
    assert spark_sql('select * from "c360"."raw"."transactions"') == "select * from `raw`.`transactions`"


def test_a_duckdb_only_construct_is_reported_with_its_line_and_spark_sql_is_not(spark):
    parser = spark._jsparkSession.sessionState().sqlParser()
    rejected = check(parser, "feature_store/x.sql", DUCKDB_ONLY)
    assert rejected is not None and rejected.model == "feature_store/x.sql"
    assert rejected.line == "orders.* exclude (customer_id)"
    assert rejected.error == "PARSE_SYNTAX_ERROR"
    spark_version = DUCKDB_ONLY.replace("exclude", "except")
    assert check(parser, "feature_store/x.sql", spark_version) is None
