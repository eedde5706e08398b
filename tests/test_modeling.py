"""c360.pipeline.modeling: which snapshots training asks for, and how a failed Spark job is reported."""

from __future__ import annotations

from datetime import date

import pytest

from c360.config import get_settings
from c360.pipeline import modeling

REAL_TRAINABLE_MODELS = modeling.trainable_models


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

    def missing(self, settings=None, models=None):
        models = modeling.MODELS if models is None else models
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
        monkeypatch.setattr(modeling, "trainable_models", lambda settings=None: modeling.MODELS)
        monkeypatch.delenv(modeling.FIRST_CHAMPION_ENV, raising=False)
        monkeypatch.delenv(modeling.BOOTSTRAP_TRAIN_ARGS_ENV, raising=False)
        return reg

    return install


def test_first_night_retrains_a_snapshot_model_on_a_young_history(fake):
    """CLV misses its floor with label windows a whole horizon apart; the overlapping retry passes: no error."""
    reg = fake(lambda m, args: m != "clv" or "--min-gap-days" in args)
    result = modeling.ensure_champions(date(2026, 11, 4), settings=get_settings())
    assert reg.champions == {"churn", "clv", "recommender"}
    assert reg.calls[1] == (["clv"], [*modeling.DEFAULT_BOOTSTRAP_TRAIN_ARGS.split(), "--min-gap-days", "30"])
    assert sorted(result["trained"]) == ["churn", "clv", "recommender"]


def test_first_night_stops_with_the_gate_results_when_the_retry_fails_too(fake):
    reg = fake(lambda m, args: m != "clv")
    with pytest.raises(modeling.JobFailed, match="clv still has no @champion.*aggregate_error_pct"):
        modeling.ensure_champions(date(2026, 11, 4), settings=get_settings())
    assert [c[0] for c in reg.calls] == [["churn", "clv", "recommender"], ["clv"]]


def test_the_recommender_is_not_retrained_on_older_snapshots(fake):
    reg = fake(lambda m, args: m != "recommender")
    with pytest.raises(modeling.JobFailed, match="recommender still has no @champion"):
        modeling.ensure_champions(date(2026, 11, 4), settings=get_settings())
    assert len(reg.calls) == 1  # its holdout is the last 30 days of interactions, not a snapshot


# ------------------------------------------------------------------------------------------------------------------
# transactions only: no product interactions in the feature store
# ------------------------------------------------------------------------------------------------------------------


def _write_interactions(settings) -> None:
    import pandas as pd

    part = modeling.interactions_path(settings) / "known_date=2026-11-04"
    part.mkdir(parents=True)
    pd.DataFrame({"customer_id": ["c1"], "product_id": ["p1"], "event_type": ["purchase"],
                  "event_time": [pd.Timestamp("2026-11-04 10:00")]}).to_parquet(part / "part-0.parquet")


def test_the_models_a_shop_can_train_follow_its_interactions(c360_env):
    assert modeling.trainable_models(c360_env) == ("churn", "clv")
    modeling.interactions_path(c360_env).mkdir(parents=True)  # an export that wrote no partition
    assert not modeling.has_interactions(c360_env)
    _write_interactions(c360_env)
    assert modeling.trainable_models(c360_env) == modeling.MODELS


def test_first_night_without_interactions_trains_churn_and_clv_and_notes_the_recommender(fake, monkeypatch,
                                                                                        c360_env):
    reg = fake(lambda m, args: True)
    # the real check: c360_env's feature store holds no interactions
    monkeypatch.setattr(modeling, "trainable_models", REAL_TRAINABLE_MODELS)
    result = modeling.ensure_champions(date(2026, 11, 4), settings=c360_env)
    assert reg.calls[0][0] == ["churn", "clv"]  # never asked for the recommender
    assert result["trained"] == ["churn", "clv"]
    assert result["notes"] == ["recommender not trained: no product interactions"]
    # the second night: nothing missing, nothing trained, the note again
    again = modeling.ensure_champions(date(2026, 11, 5), settings=c360_env)
    assert again == {"trained": [], "missing": [], "notes": ["recommender not trained: no product interactions"]}
    assert len(reg.calls) == 1


class Jobs:
    """Records the Spark jobs modeling would start (module, args) and answers like them."""

    def __init__(self, out: str = ""):
        self.calls: list[tuple[str, list[str]]] = []
        self.out = out

    def __call__(self, module, args, settings=None, **_):
        self.calls.append((module, list(args)))
        return self.out


def test_weekly_training_without_interactions_leaves_the_recommender_out_with_a_note(c360_env, monkeypatch):
    jobs = Jobs('[{"model": "churn"}, {"model": "clv"}]')
    monkeypatch.setattr(modeling, "run_job", jobs)
    results = modeling.train(date(2026, 11, 4), c360_env, extra_args=[])
    assert [c[1][:2] for c in jobs.calls] == [["--model", "churn"], ["--model", "clv"]]
    assert {"model": "recommender", "trained": False,
            "note": "recommender not trained: no product interactions"} in results
    # asked for the recommender alone: no job at all
    jobs.calls.clear()
    assert modeling.train(date(2026, 11, 4), c360_env, models=["recommender"], extra_args=[])[0]["trained"] is False
    assert jobs.calls == []


def test_nightly_scoring_asks_for_recommendations_only_with_interactions(c360_env, monkeypatch):
    jobs = Jobs()
    monkeypatch.setattr(modeling, "run_job", jobs)
    result = modeling.score(date(2026, 11, 4), c360_env)
    assert jobs.calls[-1] == ("spark_jobs.score", ["--date", "2026-11-04", "--no-recommendations"])
    assert result["recommendations"] is False and "no product interactions" in result["note"]
    _write_interactions(c360_env)
    result = modeling.score(date(2026, 11, 4), c360_env)
    assert jobs.calls[-1] == ("spark_jobs.score", ["--date", "2026-11-04"])
    assert result["recommendations"] is True and "note" not in result
