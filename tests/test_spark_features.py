"""Pure DataFrame transforms of ml.features / ml.churn / ml.value on tiny inline data."""

from __future__ import annotations

from decimal import Decimal

import pytest
from pyspark.ml.feature import SQLTransformer
from pyspark.ml.linalg import Vectors
from pyspark.testing import assertDataFrameEqual

from ml import churn, value
from ml.features import LABEL, available_features, fill_sql, label_columns, prepare_features, split_columns


def test_prepare_features_casts_decimals_ints_booleans(spark):
    df = spark.createDataFrame(
        [("c1", Decimal("12.50"), 3, True, "DE"), ("c2", None, None, None, None)],
        "customer_id string, net_revenue_eur decimal(18,2), orders_count int, has_tracking boolean, country string")
    out = prepare_features(df, ["net_revenue_eur", "orders_count", "has_tracking"], ["country"])
    expected = spark.createDataFrame(
        [("c1", 12.5, 3.0, 1.0, "DE"), ("c2", None, None, None, None)],
        "customer_id string, net_revenue_eur double, orders_count double, has_tracking double, country string")
    assertDataFrameEqual(out, expected)


def test_fill_sql_gives_nulls_their_meaning(spark):
    df = spark.createDataFrame(
        [("c1", 10.0, 400.0, None, None, None), ("c2", 3.0, 100.0, 20.0, 5.0, "FR")],
        "customer_id string, days_since_last_order double, days_since_first_order double, "
        "avg_days_between_orders double, days_since_last_visit double, country string")
    numeric = ["days_since_last_order", "days_since_first_order", "avg_days_between_orders", "days_since_last_visit"]
    out = SQLTransformer(statement=fill_sql(numeric, ["country"])).transform(df).select(
        "customer_id", "f_avg_days_between_orders", "f_days_since_last_visit", "f_country")
    # one purchase day: the gap so far is the customer's age; never visited: as old as the customer
    expected = spark.createDataFrame([("c1", 400.0, 400.0, "unknown"), ("c2", 20.0, 5.0, "FR")],
                                     "customer_id string, f_avg_days_between_orders double, "
                                     "f_days_since_last_visit double, f_country string")
    assertDataFrameEqual(out, expected)


def test_available_features_requires_the_core_columns():
    numeric, categorical = available_features(["customer_id", "days_since_last_order", "orders_count",
                                               "net_revenue_eur", "country", "unrelated"])
    assert numeric == ["days_since_last_order", "orders_count", "net_revenue_eur"] and categorical == ["country"]
    assert split_columns(numeric + categorical) == (numeric, categorical)
    with pytest.raises(ValueError, match="orders_count"):
        available_features(["days_since_last_order", "net_revenue_eur"])


def test_class_weights_and_probability_correction(spark):
    df = label_columns(spark.createDataFrame([("a", True), ("b", False), ("c", False), ("d", False)],
                                             "customer_id string, churned boolean"), "churned", boolean=True)
    weighted, correction = churn.add_class_weights(df)
    # n=4, 1 positive: w1 = 4/2 = 2, w0 = 4/6
    expected = spark.createDataFrame([("a", True, 1.0, 2.0), ("b", False, 0.0, 4 / 6), ("c", False, 0.0, 4 / 6),
                                      ("d", False, 0.0, 4 / 6)],
                                     "customer_id string, churned boolean, label double, class_weight double")
    assertDataFrameEqual(weighted, expected)
    assert correction == pytest.approx((4 / 6) / 2)

    probs = spark.createDataFrame([("a", Vectors.dense([0.5, 0.5])), ("b", Vectors.dense([0.8, 0.2]))],
                                  ["customer_id", "probability"])
    out = churn.ChurnProbability(oddsCorrection=1 / 3).transform(probs).select("customer_id", "prediction")
    # odds 1 -> 1/3 -> p 0.25; odds 0.25 -> 1/12 -> p 1/13
    assertDataFrameEqual(out, spark.createDataFrame([("a", 0.25), ("b", 1 / 13)], "customer_id string, prediction double"),
                         rtol=1e-9)


def test_one_class_labels_fail_with_advice(spark):
    df = spark.createDataFrame([(1.0,), (1.0,)], [LABEL])
    with pytest.raises(ValueError, match="one class only"):
        churn.add_class_weights(df)


def test_bgnbd_stage_matches_numpy_and_survives_save_load(spark, tmp_path):
    from pyspark.ml import PipelineModel

    from ml.clv import BGNBD, CLVModel, GammaGamma

    model = CLVModel(BGNBD(r=0.5, alpha=20.0, a=0.8, b=2.5), GammaGamma(p=6.0, q=4.0, v=30.0))
    pdf = __import__("pandas").DataFrame({
        "customer_id": ["a", "b", "c"], "bgnbd_frequency": [0.0, 3.0, 5.0], "bgnbd_recency_days": [0.0, 50.0, 200.0],
        "bgnbd_t_days": [10.0, 300.0, 210.0], "bgnbd_monetary_eur": [None, 40.0, -5.0]})
    df = spark.createDataFrame(pdf)
    path = str(tmp_path / "bgnbd")
    value.bgnbd_pipeline(model, 180).write().save(path)
    out = PipelineModel.load(path).transform(df).select("customer_id", "prediction", "p_alive", "expected_purchases")
    parts = value.predict_bgnbd_parts(model, pdf, 180)
    rows = list(zip(pdf["customer_id"], parts["value"].tolist(), parts["p_alive"].tolist(),
                    parts["expected_purchases"].tolist(), strict=True))
    assertDataFrameEqual(out, spark.createDataFrame(
        rows, "customer_id string, prediction double, p_alive double, expected_purchases double"), rtol=1e-9)
    assert parts["value"][2] > 0  # a negative mean spend after returns falls back to the population mean
    assert parts["p_alive"][0] == 1.0  # no repeat purchase yet: cannot have dropped out under BG/NBD


def test_baselines(spark):
    df = spark.createDataFrame([("a", 10.0, 200.0, 5, 4, 3, 100.0), ("b", None, 30.0, None, None, None, None)],
                               "customer_id string, days_since_last_order double, days_since_first_order double, "
                               "rfm_recency_score int, rfm_frequency_score int, rfm_monetary_score int, "
                               "net_revenue_eur_90d double")
    out = churn.baseline_scores(df).select("customer_id", "baseline_recency", "baseline_rfm")
    expected = spark.createDataFrame([("a", 10.0, 3.0 + 10 / 100000), ("b", 30.0, 15.0 + 30 / 100000)],
                                     "customer_id string, baseline_recency double, baseline_rfm double")
    assertDataFrameEqual(out, expected, rtol=1e-12)
    rr = value.run_rate(df, 180).select("customer_id", "baseline_run_rate")
    assertDataFrameEqual(rr, spark.createDataFrame([("a", 200.0), ("b", 0.0)], "customer_id string, baseline_run_rate double"))
