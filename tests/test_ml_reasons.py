"""Reason codes (ml.reasons): the top factor must be the one that truly drives the risk, for both model kinds."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ml.reasons import ChurnExplainer, Tree, churn_explainer, with_churn_reasons


def _linear(coef, mean, std=None, names=("days_since_last_order", "orders_count", "sessions_30d")):
    coef, mean = np.asarray(coef, float), np.asarray(mean, float)
    std = np.ones_like(coef) if std is None else np.asarray(std, float)
    return ChurnExplainer("linear", "raw_features", list(names), list(names), np.arange(len(names)), 0.0,
                          weights=coef / std, reference=mean)


def test_linear_top_factor_is_the_largest_positive_standardised_term():
    # coefficients per standard deviation: recency +1.2, orders -0.8, sessions -0.1
    ex = _linear([1.2, -0.8, -0.1], mean=[60, 4, 3], std=[1, 1, 1])
    rows = np.array([
        [160.0, 4.0, 3.0],   # long silence, otherwise average: recency alone raises the risk
        [60.0, 1.0, 0.0],    # average recency, few orders and sessions: orders (2.4) before sessions (0.3)
        [10.0, 9.0, 8.0],    # recent, frequent, active: nothing raises the risk
    ])
    assert ex.reasons(rows) == [["days_since_last_order high", None, None],
                                ["orders_count low", "sessions_30d low", None],
                                [None, None, None]]
    contrib, _ = ex.contributions(rows)
    assert contrib[0].tolist() == pytest.approx([120.0, 0.0, 0.0])
    # the sign matters: a model where long silence LOWERS the risk gives no recency reason to the silent customer
    assert ex.__class__("linear", "raw_features", ex.slot_names, ex.features, ex.slot_feature, 0.0,
                        weights=-ex.weights, reference=ex.reference).reasons(rows[:1])[0][0] != \
        "days_since_last_order high"


def test_linear_weights_are_per_standard_deviation_not_per_raw_unit():
    # same raw coefficient, but orders_count varies 100x less: one order is worth far more than one day
    ex = _linear([0.5, -0.5, 0.0], mean=[60, 4, 3], std=[50, 0.5, 1])
    reasons = ex.reasons(np.array([[110.0, 3.0, 3.0]]))[0]   # +1 std of recency, -2 std of orders
    assert reasons[:2] == ["orders_count low", "days_since_last_order high"]


def test_one_hot_slots_are_one_feature_named_by_the_customers_category():
    slots = ["days_since_last_order", "country=DE", "country=FR"]
    ex = ChurnExplainer("linear", "raw_features", slots, ["days_since_last_order", "country"], np.array([0, 1, 1]),
                        0.0, weights=np.array([0.01, 2.0, -1.0]), reference=np.array([50.0, 0.5, 0.5]))
    assert ex.reasons(np.array([[40.0, 1.0, 0.0], [40.0, 0.0, 0.0]])) == [
        ["country = DE", None, None],           # 2 x 0.5 + (-1) x -0.5 = 1.5
        [None, None, None]]                     # -1 + 0.5 < 0: neither country raises the risk


def _stump(feature, threshold, low, high, root):
    return Tree(np.array([feature, -1, -1]), np.array([threshold, np.nan, np.nan]), (None, None, None),
                np.array([1, -1, -1]), np.array([2, -1, -1]), np.array([root, low, high]))


def test_tree_contributions_credit_the_split_feature_and_add_up():
    # tree 1 splits recency at 90 (silent -> +0.9), tree 2 orders at 2 (few -> +0.3): a silent customer with many
    # orders has recency first; the contributions sum to the ensemble's log-odds minus the bias
    trees = [_stump(0, 90.0, -0.5, 0.9, 0.1), _stump(1, 2.0, 0.3, -0.2, 0.0)]
    names = ["days_since_last_order", "orders_count"]
    ex = ChurnExplainer("trees", "features", names, names, np.array([0, 1]), bias=0.1, trees=trees,
                        tree_weights=np.array([1.0, 1.0]))
    rows = np.array([[200.0, 5.0], [10.0, 1.0], [200.0, 1.0]])
    assert ex.reasons(rows) == [["days_since_last_order high", None, None], ["orders_count low", None, None],
                                ["days_since_last_order high", "orders_count low", None]]
    contrib, _ = ex.contributions(rows)
    leaves = np.array([[0.9, -0.2], [-0.5, 0.3], [0.9, 0.3]]).sum(axis=1)
    np.testing.assert_allclose(ex.bias + contrib.sum(axis=1), leaves)


# ---------------------------------------------------------------------------------------------------------------
# from fitted Spark pipelines: faithful to the model (bias + contributions = its log-odds), right top factor
# ---------------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def churn_data(spark):
    rng = np.random.default_rng(11)
    n = 400
    silence = rng.integers(0, 365, n)
    frame = pd.DataFrame({
        "customer_id": [f"c{i}" for i in range(n)],
        "days_since_last_order": silence.astype(float),
        "orders_count": rng.integers(1, 8, n).astype(float),
        "net_revenue_eur": rng.gamma(2, 50, n),
        "country": rng.choice(["DE", "FR", "NL"], n),
    })
    # churn is driven by the silence only; the other features are noise
    frame["label"] = (rng.random(n) < 1 / (1 + np.exp(-(silence - 180) / 30))).astype(float)
    frame["class_weight"] = 1.0
    return spark.createDataFrame(frame)


@pytest.mark.parametrize("kind", ["logreg", "gbt"])
def test_fitted_pipeline_reasons_are_faithful_and_name_the_driver(spark, churn_data, kind):
    from pyspark.ml.functions import vector_to_array
    from pyspark.sql import functions as F

    from ml.churn import build_pipeline

    numeric, categorical = ["days_since_last_order", "orders_count", "net_revenue_eur"], ["country"]
    params = {"maxIter": 15, "maxDepth": 3} if kind == "gbt" else {}
    model = build_pipeline(kind, numeric, categorical, odds_correction=0.5, params=params, derived=False).fit(churn_data)
    out = model.transform(churn_data)
    ex = churn_explainer(model, out)
    assert ex is not None and ex.kind == ("linear" if kind == "logreg" else "trees")
    assert set(ex.features) == {*numeric, *categorical}
    rows = out.select("customer_id", "days_since_last_order", vector_to_array(ex.vector_col).alias("x"),
                      vector_to_array("probability")[1].alias("p")).toPandas()
    x = np.vstack(rows["x"].to_numpy())
    contrib, _ = ex.contributions(x)
    log_odds = np.log(rows["p"] / (1 - rows["p"]))
    np.testing.assert_allclose(ex.bias + contrib.sum(axis=1), log_odds, atol=1e-6)
    # the customers silent for longest: their risk comes first from the silence
    silent = rows["days_since_last_order"].to_numpy() > 300
    tops = [r[0] for r in ex.reasons(x[silent])]
    assert tops and all(t == "days_since_last_order high" for t in tops), tops

    with_reasons = with_churn_reasons(out, ex).select("customer_id", "churn_reason_1", "churn_reason_2",
                                                      "churn_reason_3")
    got = with_reasons.where(F.col("customer_id").isin(list(rows["customer_id"][silent]))).toPandas()
    assert (got["churn_reason_1"] == "days_since_last_order high").all()
    if kind == "gbt":  # an indexed category is named by its label, not its index
        cats = [r for r in with_reasons.toPandas()[["churn_reason_1", "churn_reason_2", "churn_reason_3"]]
                .to_numpy().ravel() if r and r.startswith("country")]
        assert all(c in {"country = DE", "country = FR", "country = NL"} for c in cats)


def test_a_pipeline_without_a_known_classifier_has_null_reasons(spark):
    from pyspark.ml import Pipeline
    from pyspark.ml.feature import SQLTransformer

    df = spark.createDataFrame([(1.0,), (300.0,)], ["days_since_last_order"])
    model = Pipeline(stages=[SQLTransformer(statement="SELECT *, days_since_last_order / 365 AS prediction "
                                                      "FROM __THIS__")]).fit(df)
    out = model.transform(df)
    assert churn_explainer(model, out) is None
    rows = with_churn_reasons(out, None).toPandas()
    assert rows[["churn_reason_1", "churn_reason_2", "churn_reason_3"]].isna().all().all()
