"""Load the scoring job's Parquet output for a date into the warehouse (raw.scores, raw.recommendations).

Spark writes Parquet (it never opens the DuckDB file); this step copies one date into the warehouse so dbt
can build the score marts and segments. Loading a date replaces that date: reruns never duplicate.
"""

from __future__ import annotations

import logging
from datetime import date
from pathlib import Path

from c360.config import Settings, get_settings
from c360.warehouse import connect, rollback

log = logging.getLogger(__name__)

SCORES_COLUMNS = {
    "customer_id": "VARCHAR", "as_of_date": "DATE", "run_id": "VARCHAR", "churn_probability": "DOUBLE",
    "churn_decile": "INTEGER", "p_alive": "DOUBLE", "expected_purchases": "DOUBLE",
    "predicted_value_eur": "DOUBLE", "value_decile": "INTEGER", "churn_model_version": "VARCHAR",
    "clv_model_version": "VARCHAR", "recommender_model_version": "VARCHAR", "feature_snapshot_date": "DATE",
    "scored_at": "TIMESTAMPTZ",
    # the label horizons the churn and CLV champions were trained for (what churn_probability and
    # predicted_value_eur are about); null in partitions written before they were recorded
    "churn_horizon_days": "INTEGER", "value_horizon_days": "INTEGER",
}
RECOMMENDATION_COLUMNS = {
    "customer_id": "VARCHAR", "as_of_date": "DATE", "rank": "INTEGER", "product_id": "VARCHAR", "score": "DOUBLE",
    "source": "VARCHAR", "run_id": "VARCHAR", "recommender_model_version": "VARCHAR",
}
TABLES = {"scores": SCORES_COLUMNS, "recommendations": RECOMMENDATION_COLUMNS}


def ensure_tables(con) -> None:
    con.execute("CREATE SCHEMA IF NOT EXISTS raw")
    for table, cols in TABLES.items():
        ddl = ", ".join(f'"{c}" {t}' for c, t in cols.items())
        con.execute(f"CREATE TABLE IF NOT EXISTS raw.{table} ({ddl}, _loaded_at TIMESTAMPTZ)")
        for c, t in cols.items():  # a warehouse created before a column existed gets it (at the end)
            con.execute(f'ALTER TABLE raw.{table} ADD COLUMN IF NOT EXISTS "{c}" {t}')


def partition_dir(settings: Settings, table: str, day: date) -> Path:
    return Path(settings.scores_dir) / table / f"dt={day.isoformat()}"


def _scored_without_recommender(con, settings: Settings, day: date) -> bool:
    """True when the date's scores Parquet exists and no row names a recommender version: the scoring job ran with
    --no-recommendations (no product interactions), so no recommendations partition is expected."""
    folder = partition_dir(settings, "scores", day)
    files = [str(p) for p in sorted(folder.glob("*.parquet"))] if folder.is_dir() else []
    if not files:
        return False
    n = con.execute("SELECT count(*) FROM read_parquet(?) WHERE recommender_model_version IS NOT NULL",
                    [files]).fetchall()[0][0]
    return n == 0


def load_scores(day: date, settings: Settings | None = None) -> dict[str, int]:
    """Replace raw.scores / raw.recommendations rows of `day` with the Parquet files of dt=day."""
    settings = settings or get_settings()
    counts = {}
    con = connect(settings)
    try:
        ensure_tables(con)
        con.execute("BEGIN TRANSACTION")
        for table, cols in TABLES.items():
            folder = partition_dir(settings, table, day)
            files = sorted(p for p in folder.glob("*.parquet")) if folder.is_dir() else []
            if not files and table == "recommendations" and _scored_without_recommender(con, settings, day):
                # scored without a recommender (a transactions-only shop): the date has no recommendations
                con.execute("DELETE FROM raw.recommendations WHERE as_of_date = ?", [day])
                counts[table] = 0
                continue
            if not files:
                raise FileNotFoundError(
                    f"No {table} Parquet under {folder}: the scoring job has not written {day}. "
                    f"Run it first (c360 score --date {day})."
                )
            con.execute(f"DELETE FROM raw.{table} WHERE as_of_date = ?", [day])
            paths = [str(p) for p in files]
            present = {r[0] for r in con.execute("DESCRIBE SELECT * FROM read_parquet(?)", [paths]).fetchall()}
            # by name: a partition written before a column existed loads it as null
            select = ", ".join(f'CAST({f"{chr(34)}{c}{chr(34)}" if c in present else "NULL"} AS {t})'
                               for c, t in cols.items())
            names = ", ".join(f'"{c}"' for c in [*cols, "_loaded_at"])
            con.execute(
                f"INSERT INTO raw.{table} ({names}) SELECT {select}, now() FROM read_parquet(?) ORDER BY ALL", [paths]
            )
            counts[table] = con.execute(f"SELECT count(*) FROM raw.{table} WHERE as_of_date = ?", [day]).fetchall()[0][0]
        con.execute("COMMIT")
    except BaseException as exc:
        rollback(con, exc)  # never masks exc
        raise
    finally:
        con.close()
    log.info("Loaded scores for %s: %s", day, counts)
    return counts
