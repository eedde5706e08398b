"""ml.metrics against values worked out by hand (comments show the arithmetic)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ml import metrics as m


def test_roc_and_pr_auc_small_example():
    y = [0, 0, 1, 1]
    s = [0.1, 0.4, 0.35, 0.8]
    # positive/negative pairs ranked correctly: (0.35>0.1), (0.8>0.1), (0.8>0.4) = 3 of 4
    assert m.roc_auc(y, s) == pytest.approx(0.75)
    # ranking 0.8(+) 0.4(-) 0.35(+) 0.1(-): precision at the positives 1/1 and 2/3
    assert m.pr_auc(y, s) == pytest.approx((1 + 2 / 3) / 2)


def test_auc_ties_count_half_and_order_does_not_matter():
    assert m.roc_auc([0, 1], [0.5, 0.5]) == pytest.approx(0.5)
    # all four rows tied: one threshold, precision 2/4 at recall 1
    assert m.pr_auc([1, 0, 1, 0], [0.3] * 4) == pytest.approx(0.5)
    assert m.pr_auc([0, 1, 0, 1], [0.3] * 4) == pytest.approx(0.5)


def test_auc_undefined_with_one_class():
    assert math.isnan(m.roc_auc([1, 1], [0.2, 0.3]))


def test_lift_and_capture_top_decile():
    y = [1, 0, 0, 1, 0, 0, 0, 0, 0, 0]
    s = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.0]
    # top decile = 1 row, a positive: rate 1.0 vs base rate 0.2
    assert m.lift_at(y, s, 0.1) == pytest.approx(5.0)
    assert m.capture_at(y, s, 0.1) == pytest.approx(0.5)
    # top 40% holds both positives
    assert m.capture_at(y, s, 0.4) == pytest.approx(1.0)
    assert m.lift_at(y, s, 0.4) == pytest.approx((2 / 4) / 0.2)


def test_brier_and_calibration():
    assert m.brier_score([0, 1], [0.2, 0.6]) == pytest.approx((0.04 + 0.16) / 2)
    y = [0, 0, 1, 1]
    p = [0.05, 0.15, 0.15, 0.95]
    table = m.calibration_table(y, p, bins=10)
    assert len(table) == 10
    filled = table[table["rows"] > 0]
    assert filled["bin"].tolist() == [0, 1, 9]
    assert filled["rows"].tolist() == [1, 2, 1]
    assert filled["observed_rate"].tolist() == pytest.approx([0.0, 0.5, 1.0])
    assert filled["mean_predicted"].tolist() == pytest.approx([0.05, 0.15, 0.95])
    # |0-0.05|*1 + |0.5-0.15|*2 + |1-0.95|*1 = 0.8, over 4 rows
    assert m.expected_calibration_error(y, p) == pytest.approx(0.2)


def test_roc_curve_points_end_at_one():
    fpr, tpr = m.roc_curve_points([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    assert fpr.tolist() == pytest.approx([0, 0, 0.5, 0.5, 1.0])
    assert tpr.tolist() == pytest.approx([0, 0.5, 0.5, 1.0, 1.0])


def test_regression_metrics():
    y = [0, 10, 20, 30]
    p = [5, 5, 25, 30]
    out = m.regression_metrics(y, p)
    assert out["mae"] == pytest.approx((5 + 5 + 5 + 0) / 4)
    assert out["rmse"] == pytest.approx(math.sqrt((25 + 25 + 25 + 0) / 4))
    assert out["aggregate_error_pct"] == pytest.approx((65 - 60) / 60 * 100)
    # ranks y 1,2,3,4; p 1.5,1.5,3,4 -> cov 4.5 / sqrt(5 * 4.5)
    assert out["spearman"] == pytest.approx(4.5 / math.sqrt(5 * 4.5))
    # top decile of 4 rows = 1 row, the predicted 30 which is worth 30 of 60
    assert out["top_decile_capture"] == pytest.approx(0.5)


def test_ranking_metrics_per_user():
    rec = ["a", "b", "c", "d"]
    rel = {"b", "d", "e"}
    assert m.precision_at_k(rec, rel, 3) == pytest.approx(1 / 3)
    assert m.recall_at_k(rec, rel, 3) == pytest.approx(1 / 3)
    ideal3 = 1 + 1 / math.log2(3) + 1 / math.log2(4)
    assert m.ndcg_at_k(rec, rel, 3) == pytest.approx((1 / math.log2(3)) / ideal3)
    assert m.ndcg_at_k(rec, rel, 4) == pytest.approx((1 / math.log2(3) + 1 / math.log2(5)) / ideal3)
    assert m.ndcg_at_k(["b", "d", "e"], rel, 3) == pytest.approx(1.0)


def test_ranking_metrics_aggregate_and_coverage():
    recs = {"u1": ["a", "b"], "u2": ["a", "c"], "u3": ["x", "y"]}
    relevant = {"u1": {"a"}, "u2": {"b"}, "u4": {"a"}, "u5": set()}
    out = m.ranking_metrics(recs, relevant, k=2, catalog_size=10)
    # users with something relevant: u1 (hit at rank 1), u2 (miss), u4 (no recommendations = miss)
    assert out["users_evaluated"] == 3
    assert out["precision_at_2"] == pytest.approx((0.5 + 0 + 0) / 3)
    assert out["recall_at_2"] == pytest.approx((1 + 0 + 0) / 3)
    assert out["ndcg_at_2"] == pytest.approx((1 + 0 + 0) / 3)
    # a, b, c, x, y recommended out of 10
    assert out["catalog_coverage"] == pytest.approx(0.5)


def test_classification_metrics_perfect_model():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    out = m.classification_metrics(y, y * 0.9 + 0.05)
    assert out["roc_auc"] == pytest.approx(1.0)
    assert out["pr_auc"] == pytest.approx(1.0)
    assert out["brier"] == pytest.approx(0.0025)


def test_length_mismatch_is_an_error():
    with pytest.raises(ValueError, match="differ in length"):
        m.roc_auc([0, 1], [0.1])
