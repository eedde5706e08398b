"""PSI math on known distributions, the thresholds and hold rule, and the nightly monitoring.psi table."""

from __future__ import annotations

import argparse
import json
import math
from datetime import date
from decimal import Decimal

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from c360.cli import monitor as monitor_cli
from c360.config import get_settings
from c360.pipeline import monitoring
from c360.pipeline.monitoring import (
    EPSILON,
    psi_categorical,
    psi_numeric,
    psi_status,
    psi_thresholds,
    run_monitoring,
    should_hold_exports,
)

D, REF = date(2025, 6, 2), date(2025, 3, 31)


def test_identical_distributions_have_zero_psi():
    x = np.random.default_rng(0).normal(size=5000)
    assert psi_numeric(x, x.copy())[0] == pytest.approx(0.0, abs=1e-12)
    assert psi_numeric(x, np.random.default_rng(1).normal(size=5000))[0] < 0.02  # same law, new sample


def test_shift_is_detected_and_small_noise_is_not():
    rng = np.random.default_rng(0)
    ref = rng.normal(size=20_000)
    assert psi_numeric(ref, rng.normal(loc=1.0, size=20_000))[0] > 0.25
    assert psi_numeric(ref, rng.normal(loc=0.05, size=20_000))[0] < 0.1


def test_decile_bins_and_epsilon_by_hand():
    ref = np.arange(1000, dtype=float)  # ten equal decile bins
    psi, bins = psi_numeric(ref, np.zeros(100))  # everything lands in the first bin
    assert bins == 10
    expected = (1 - 0.1) * math.log(1 / 0.1) + 9 * (EPSILON - 0.1) * math.log(EPSILON / 0.1)
    assert psi == pytest.approx(expected)


def test_heavy_ties_reduce_bins_and_missing_values_count():
    ref = np.array([1.0] * 700 + [2.0] * 200 + [5.0] * 100)
    psi, bins = psi_numeric(ref, ref.copy())
    assert psi == pytest.approx(0.0) and bins < 10
    with_nulls = np.where(np.arange(1000) % 2 == 0, np.nan, ref)  # half the values went missing
    psi, bins = psi_numeric(ref, with_nulls)
    assert psi > 0.25 and bins == 4  # 3 value bins + the missing bin


def test_categorical_psi_by_hand():
    ref = ["a"] * 50 + ["b"] * 50
    cur = ["a"] * 80 + ["b"] * 20
    expected = 0.3 * math.log(0.8 / 0.5) + (-0.3) * math.log(0.2 / 0.5)
    assert psi_categorical(ref, cur) == (pytest.approx(expected), 2)
    assert monitoring.population_stability_index(ref, cur) == pytest.approx(expected)
    assert psi_categorical(ref, ref)[0] == pytest.approx(0.0)


def test_thresholds_from_environment(monkeypatch):
    assert psi_thresholds() == (0.1, 0.25)
    assert [psi_status(v) for v in (0.05, 0.1, 0.2, 0.25, 1.0)] == ["ok", "warn", "warn", "hold", "hold"]
    monkeypatch.setenv("C360_PSI_WARN", "0.02")
    monkeypatch.setenv("C360_PSI_HOLD", "0.05")
    assert psi_status(0.03) == "warn" and psi_status(0.06) == "hold"
    monkeypatch.setenv("C360_PSI_HOLD", "lots")
    with pytest.raises(ValueError, match="C360_PSI_HOLD"):
        psi_thresholds()
    monkeypatch.setenv("C360_PSI_HOLD", "0.01")
    with pytest.raises(ValueError, match="warn <= hold"):
        psi_thresholds()


def _parquet(folder, columns):
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(columns), folder / "part-0.parquet")


@pytest.fixture
def snapshots(c360_env):
    """Reference and current feature snapshots and scores; orders_count and churn_probability drift."""
    rng = np.random.default_rng(7)
    n = 2000
    for day, drift in ((REF, False), (D, True)):
        _parquet(c360_env.feature_store_dir / "customer_features" / f"as_of_date={day}", {
            "customer_id": [f"c{i}" for i in range(n)],
            "days_since_last_order": rng.integers(0, 365, n),
            "orders_count": rng.poisson(4.0 if drift else 2.0, n),
            "net_revenue_eur": pa.array([Decimal(f"{v:.2f}") for v in rng.gamma(2, 50, n)], pa.decimal128(18, 2)),
            "country": rng.choice(["DE", "FR", "SE"], n).tolist(),
            "signup_date": pa.array([day] * n, pa.date32()),
        })
        _parquet(c360_env.scores_dir / "scores" / f"dt={day}", {
            "customer_id": [f"c{i}" for i in range(n)],
            "churn_probability": rng.beta(5 if drift else 2, 2, n),
            "predicted_value_eur": rng.lognormal(4, 1, n),
        })
    return c360_env


@pytest.mark.reliability
def test_nightly_monitoring_records_and_holds(snapshots):
    features = ("days_since_last_order", "orders_count", "net_revenue_eur", "country", "signup_date", "nope")
    result = run_monitoring(snapshots, D, REF, features=features)
    by_name = {(r.kind, r.name): r for r in result.rows}
    assert set(by_name) == {("feature", "days_since_last_order"), ("feature", "orders_count"),
                            ("feature", "net_revenue_eur"), ("feature", "country"), ("score", "churn_probability"),
                            ("score", "predicted_value_eur")}
    assert by_name[("feature", "orders_count")].status == "hold"
    assert by_name[("score", "churn_probability")].status == "hold"
    assert by_name[("feature", "country")].status == "ok" and by_name[("feature", "net_revenue_eur")].status == "ok"
    notes = "\n".join(result.notes)
    assert "signup_date" in notes and "nope" in notes and "p_alive" in notes  # skipped, each with a reason

    # Idempotent per date: a rerun replaces, never appends.
    run_monitoring(snapshots, D, REF, features=features)
    con = duckdb.connect(str(snapshots.warehouse_path), read_only=True)
    rows = con.execute("SELECT kind, name, status, reference_date FROM monitoring.psi WHERE as_of_date = ?",
                       [D]).fetchall()
    con.close()
    assert len(rows) == 6 and all(r[3] == REF for r in rows)

    decision = should_hold_exports(snapshots, D)
    assert decision and decision.hold and decision.status == "hold"
    assert "held back" in decision.message and "orders_count" in decision.message
    assert "churn_probability" in decision.message and "C360_PSI_HOLD=0.25" in decision.message


def test_hold_threshold_is_read_at_decision_time(snapshots, monkeypatch):
    run_monitoring(snapshots, D, REF, features=("country",), scores=("predicted_value_eur",))
    assert not should_hold_exports(snapshots, D)
    monkeypatch.setenv("C360_PSI_WARN", "0")
    monkeypatch.setenv("C360_PSI_HOLD", "0")
    # the export task resolves the settings when it runs: the thresholds then apply, not those of the check
    assert should_hold_exports(get_settings(), D).hold


def test_drift_holds_exports_on_the_spark_warehouse_too(snapshots, monkeypatch, tmp_path):
    """With C360_WAREHOUSE=spark the check is recorded in the ledger file and the export's decision, which opens the
    warehouse read-only (the Spark reader), must still find it: otherwise drift would never hold a Spark shop."""
    monkeypatch.setenv("C360_WAREHOUSE", "spark")
    monkeypatch.delenv("DBT_TARGET", raising=False)
    monkeypatch.setenv("C360_SPARK_WAREHOUSE_DIR", str(tmp_path / "spark-warehouse"))
    settings = get_settings()
    run_monitoring(settings, D, REF, features=("orders_count",), scores=())
    decision = should_hold_exports(get_settings(), D)
    assert decision.hold and "orders_count" in decision.message


def test_no_check_recorded_does_not_hold(c360_env):
    decision = should_hold_exports(c360_env, D)
    assert not decision and decision.status == "not_checked" and "no drift check" in decision.message


def test_missing_reference_is_explained(snapshots, monkeypatch):
    result = run_monitoring(snapshots, D, date(2024, 1, 1))
    assert result.rows == [] and any("missing" in n for n in result.notes)
    # No reference anywhere (no argument, no env, no MLflow store): nothing computed, and it says how to fix it.
    result = run_monitoring(snapshots, D)
    assert result.reference_date is None and "C360_PSI_REFERENCE_DATE" in result.notes[0]
    monkeypatch.setenv("C360_PSI_REFERENCE_DATE", REF.isoformat())
    assert run_monitoring(get_settings(), D).reference_date == REF


def test_cli_json(snapshots, capsys):
    parser = argparse.ArgumentParser()
    monitor_cli.add_arguments(parser)
    assert monitor_cli.run(parser.parse_args(["--date", str(D), "--reference-date", str(REF),
                                             "--features", "orders_count", "--json"])) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["exports"]["hold"] is True and {r["name"] for r in out["rows"]} == {
        "orders_count", "churn_probability", "predicted_value_eur"}
