"""c360.modeling: which snapshots training asks for, and how a failed Spark job is reported."""

from __future__ import annotations

from datetime import date

import pytest

from c360 import modeling


def test_training_snapshots_every_28_days_back_to_the_start_of_history():
    dates = modeling.training_snapshot_dates(date(2026, 11, 4), date(2025, 10, 1))
    assert dates[-1] == date(2026, 10, 7)  # 28 days before the run date
    assert all((b - a).days == 28 for a, b in zip(dates, dates[1:], strict=False))
    assert dates[0] >= date(2025, 10, 29)  # at least 28 days of history behind the oldest
    assert len(dates) == 13
    # the grid is anchored on the run date: the next night asks for the next day's grid, not a re-shuffle
    assert modeling.training_snapshot_dates(date(2025, 10, 20), date(2025, 10, 1)) == []


def test_a_failing_job_raises_with_its_last_lines(c360_env):
    with pytest.raises(modeling.JobFailed) as err:
        modeling.run_job("spark_jobs.train", ["--model", "nonsense"], c360_env)
    assert "spark_jobs.train --model nonsense failed (exit 2)" in str(err.value)
    assert "invalid choice" in str(err.value)


class FakeRegistry:
    """Stands in for the Spark training job and the MLflow registry: a model gets a champion when it is trained
    with arguments it passes its floors with."""

    def __init__(self, passes):
        self.champions: set[str] = set()
        self.passes = passes  # (model, args) -> bool
        self.calls: list[tuple[list[str], list[str]]] = []

    def missing(self, settings=None, models=modeling.MODELS):
        return [m for m in models if m not in self.champions]

    def train(self, day, settings=None, *, models=modeling.MODELS, extra_args=None):
        self.calls.append((list(models), list(extra_args or [])))
        out = []
        for m in models:
            ok = self.passes(m, extra_args or [])
            if ok:
                self.champions.add(m)
            out.append({"model": m, "gates": "passed" if ok else "failed: |aggregate_error_pct| <= 25"})
        return out


@pytest.fixture()
def fake(monkeypatch):
    def install(passes):
        reg = FakeRegistry(passes)
        monkeypatch.setattr(modeling, "missing_champions", reg.missing)
        monkeypatch.setattr(modeling, "train", reg.train)
        monkeypatch.setattr(modeling, "prepare_training_snapshots", lambda day, settings=None: [])
        monkeypatch.delenv(modeling.FIRST_CHAMPION_ENV, raising=False)
        monkeypatch.delenv(modeling.BOOTSTRAP_TRAIN_ARGS_ENV, raising=False)
        return reg

    return install


def test_first_night_retrains_a_snapshot_model_on_a_young_history(fake):
    """CLV misses its floor with label windows a whole horizon apart; the overlapping retry passes: no error."""
    reg = fake(lambda m, args: m != "clv" or "--min-gap-days" in args)
    result = modeling.ensure_champions(date(2026, 11, 4), settings=object())
    assert reg.champions == {"churn", "clv", "recommender"}
    assert reg.calls[1] == (["clv"], [*modeling.DEFAULT_BOOTSTRAP_TRAIN_ARGS.split(), "--min-gap-days", "30"])
    assert sorted(result["trained"]) == ["churn", "clv", "recommender"]


def test_first_night_stops_with_the_gate_results_when_the_retry_fails_too(fake):
    reg = fake(lambda m, args: m != "clv")
    with pytest.raises(modeling.JobFailed, match="clv still has no @champion.*aggregate_error_pct"):
        modeling.ensure_champions(date(2026, 11, 4), settings=object())
    assert [c[0] for c in reg.calls] == [["churn", "clv", "recommender"], ["clv"]]


def test_the_recommender_is_not_retrained_on_older_snapshots(fake):
    reg = fake(lambda m, args: m != "recommender")
    with pytest.raises(modeling.JobFailed, match="recommender still has no @champion"):
        modeling.ensure_champions(date(2026, 11, 4), settings=object())
    assert len(reg.calls) == 1  # its holdout is the last 30 days of interactions, not a snapshot
