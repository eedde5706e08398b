"""c360.scores_load: a night scored without a recommender (transactions only) loads its scores and no
recommendations; a night that did use a recommender still needs its recommendations partition."""

from __future__ import annotations

from datetime import date

import duckdb
import pandas as pd
import pytest

from c360.scores_load import SCORES_COLUMNS, load_scores, partition_dir

DAY = date(1998, 6, 30)


def _write_scores(settings, day: date, recommender_version: str | None) -> None:
    rows = pd.DataFrame({
        "customer_id": ["c1", "c2"], "as_of_date": [day, day], "run_id": ["r", "r"],
        "churn_probability": [0.2, 0.7], "churn_decile": [1, 10], "p_alive": [0.9, 0.3],
        "expected_purchases": [1.2, 0.1], "predicted_value_eur": [50.0, 3.0], "value_decile": [10, 1],
        "churn_model_version": ["1", "1"], "clv_model_version": ["1", "1"],
        "recommender_model_version": [recommender_version] * 2,
        "feature_snapshot_date": [day, day], "scored_at": [pd.Timestamp(day)] * 2,
        "churn_horizon_days": [90, 90], "value_horizon_days": [180, 180],
    })
    folder = partition_dir(settings, "scores", day)
    folder.mkdir(parents=True)
    rows[[c for c in rows.columns if c in SCORES_COLUMNS]].to_parquet(folder / "part-0.parquet", index=False)


def test_scores_without_a_recommender_load_with_no_recommendations(c360_env):
    _write_scores(c360_env, DAY, None)
    assert load_scores(DAY, c360_env) == {"scores": 2, "recommendations": 0}
    with duckdb.connect(str(c360_env.warehouse_path), read_only=True) as con:
        assert con.execute("select count(*) from raw.scores where as_of_date = ?", [DAY]).fetchone()[0] == 2
        assert con.execute("select count(*) from raw.recommendations").fetchone()[0] == 0


def test_scores_from_a_recommender_still_need_their_recommendations(c360_env):
    _write_scores(c360_env, DAY, "3")
    with pytest.raises(FileNotFoundError, match="No recommendations Parquet"):
        load_scores(DAY, c360_env)
    with duckdb.connect(str(c360_env.warehouse_path), read_only=True) as con:  # rolled back: nothing half-loaded
        assert con.execute("select count(*) from raw.scores").fetchone()[0] == 0


def test_every_score_row_carries_the_horizons_and_older_partitions_and_tables_still_load(c360_env):
    # a warehouse whose raw.scores was created before the horizon columns existed
    c360_env.warehouse_path.parent.mkdir(parents=True, exist_ok=True)
    with duckdb.connect(str(c360_env.warehouse_path)) as con:
        old_cols = {c: t for c, t in SCORES_COLUMNS.items() if not c.endswith("_horizon_days")}
        con.execute("CREATE SCHEMA raw")
        con.execute("CREATE TABLE raw.scores (" + ", ".join(f'"{c}" {t}' for c, t in old_cols.items())
                    + ", _loaded_at TIMESTAMPTZ)")
    _write_scores(c360_env, DAY, None)
    # a partition written before the horizons were recorded
    older = DAY.replace(day=29)
    _write_scores(c360_env, older, None)
    part = partition_dir(c360_env, "scores", older) / "part-0.parquet"
    pd.read_parquet(part).drop(columns=["churn_horizon_days", "value_horizon_days"]).to_parquet(part, index=False)
    load_scores(DAY, c360_env)
    load_scores(older, c360_env)
    with duckdb.connect(str(c360_env.warehouse_path), read_only=True) as con:
        rows = con.execute("select as_of_date, churn_horizon_days, value_horizon_days, churn_probability "
                           "from raw.scores order by as_of_date, customer_id").fetchall()
    assert rows == [(older, None, None, 0.2), (older, None, None, 0.7), (DAY, 90, 180, 0.2), (DAY, 90, 180, 0.7)]
