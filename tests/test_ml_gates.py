"""Promotion gates: floors relative to baselines, margin over the champion, first model."""

from __future__ import annotations

from ml.gates import DEFAULT_GATES, Floor, GateConfig, evaluate_gates

CHURN = DEFAULT_GATES["churn"]


def _metrics(auc: float, pr: float = 0.6, brier: float = 0.2) -> dict[str, float]:
    return {"roc_auc": auc, "pr_auc": pr, "brier": brier,
            "baseline_recency_roc_auc": 0.70, "baseline_recency_pr_auc": 0.55, "baseline_base_rate_brier": 0.24}


def test_first_model_needs_only_the_floors():
    result = evaluate_gates(CHURN, _metrics(0.75), None)
    assert result.passed
    assert [c.name for c in result.checks][-1] == "champion:roc_auc"


def test_floor_relative_to_baseline_blocks_a_weak_model():
    result = evaluate_gates(CHURN, _metrics(0.71), None)  # beats recency by only 0.01 < 0.02
    assert not result.passed
    assert [c.name for c in result.failed] == ["floor:roc_auc"]
    assert result.failed[0].threshold == 0.72
    assert "baseline_recency_roc_auc + 0.02" in result.summary()


def test_challenger_must_beat_champion_by_the_margin():
    assert not evaluate_gates(CHURN, _metrics(0.801), {"roc_auc": 0.80}).passed   # +0.001 < 0.002
    assert evaluate_gates(CHURN, _metrics(0.803), {"roc_auc": 0.80}).passed
    # the margin is configurable, e.g. a tolerance that lets a fresh model replace an equal one
    assert evaluate_gates(CHURN.with_margin(-0.005), _metrics(0.797), {"roc_auc": 0.80}).passed


def test_lower_is_better_relative_margin_and_abs_floor():
    config = GateConfig("mae", higher_is_better=False, min_improvement=0.05, relative=True,
                        floors=(Floor("aggregate_error_pct", value=10, higher_is_better=False, use_abs=True),))
    assert evaluate_gates(config, {"mae": 94.0, "aggregate_error_pct": -8.0}, {"mae": 100.0}).passed
    assert not evaluate_gates(config, {"mae": 96.0, "aggregate_error_pct": -8.0}, {"mae": 100.0}).passed
    assert not evaluate_gates(config, {"mae": 90.0, "aggregate_error_pct": -12.0}, {"mae": 100.0}).passed


def test_missing_metric_fails_closed():
    result = evaluate_gates(CHURN, {"roc_auc": 0.9}, None)
    assert not result.passed
    assert all("missing" in c.rule for c in result.failed)


def test_a_baseline_served_as_the_model_has_no_floors_but_must_beat_the_champion():
    from ml.gates import baseline_gates, best_baseline, floors_only

    clv = DEFAULT_GATES["clv"]
    weak = {"mae": 50.0, "top_decile_capture": 0.3, "aggregate_error_pct": -37.0, "baseline_run_rate_mae": 45.0,
            "baseline_run_rate_top_decile_capture": 0.35}
    assert not floors_only(clv, weak).passed  # the ML candidate: -37 % and worse than the run rate
    # the baselines on the same holdout: the lower MAE serves
    assert best_baseline(clv, {"bgnbd": {"mae": 44.0}, "run_rate": {"mae": 45.0}}) == "bgnbd"
    assert best_baseline(clv, {"bgnbd": {"mae": float("nan")}, "run_rate": {"mae": 45.0}}) == "run_rate"
    assert best_baseline(CHURN, {"recency": {"roc_auc": 0.70}}) == "recency"
    assert best_baseline(clv, {}) is None
    base = {"mae": 44.0, "aggregate_error_pct": -20.0, "top_decile_capture": 0.3}
    first = evaluate_gates(baseline_gates("clv"), base, None)
    assert first.passed, first.summary()  # the first night gets a champion
    assert not evaluate_gates(baseline_gates("clv"), base, {"mae": 40.0}).passed  # never replaces a better one
    assert evaluate_gates(baseline_gates("clv"), base, {"mae": 46.0}).passed
