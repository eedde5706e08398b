"""Nightly scoring: churn, CLV and recommendations for every customer of one feature snapshot.

    python -m spark_jobs.score --date YYYY-MM-DD [--model-prefix dev_] [--no-recommendations]

Reads <feature_store>/customer_features/as_of_date=D/, loads models:/{churn,clv,recommender}@champion (by alias
only), scores, and replaces <scores>/scores/dt=D/ and <scores>/recommendations/dt=D/ (Parquet) atomically.
Nothing is written when an alias is missing, the snapshot is missing or lacks a column a model's signature needs,
or the interaction events are missing. Contract: docs/models.md, "Scoring".
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import logging
import shutil
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from ml.reasons import REASON_COLUMNS
from spark_jobs.common import build_spark, log, setup_logging, step

MODELS = ("churn", "clv", "recommender")
TOP_N = 10

SCORES_COLUMNS = ["customer_id", "as_of_date", "run_id", "churn_probability", "churn_decile", "p_alive",
                  "expected_purchases", "predicted_value_eur", "value_decile", "churn_model_version",
                  "clv_model_version", "recommender_model_version", "feature_snapshot_date", "scored_at",
                  "churn_horizon_days", "value_horizon_days", *REASON_COLUMNS]
RECOMMENDATION_COLUMNS = ["customer_id", "as_of_date", "rank", "product_id", "score", "source", "run_id",
                          "recommender_model_version"]


class ScoringError(RuntimeError):
    """A precondition of scoring failed; nothing was written."""


@dataclass(frozen=True)
class Champion:
    name: str
    version: str
    uri: str            # models:/<name>/<version> - the exact version the alias pointed at when resolved
    columns: list[str]  # signature inputs
    horizon_days: int | None = None  # the label horizon it was trained for (version tag / run param)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of the score command (also usable as a `c360 score` sub-command)."""
    parser.add_argument("--date", required=True, help="feature snapshot date D (YYYY-MM-DD) to score")
    parser.add_argument("--model-prefix", default="", help="prefix of registered model names (e.g. 'dev_')")
    parser.add_argument("--interactions", help="interaction events Parquet (default: <feature_store>/interactions)")
    parser.add_argument("--products", help="products Parquet with product_id, category "
                                           "(default: <feature_store>/products, optional)")
    parser.add_argument("--no-recommendations", action="store_true",
                        help="score churn/CLV only (recommender champion and interactions not required; "
                             "recommendations/dt=D is left untouched)")


def run(args: argparse.Namespace) -> int:
    return score(args.date, model_prefix=args.model_prefix, interactions=args.interactions,
                 products=args.products, recommendations=not args.no_recommendations)


# --------------------------------------------------------------------------------------------------
# pure helpers
# --------------------------------------------------------------------------------------------------

def scoring_run_id(as_of_date: str, versions: dict[str, str | None]) -> str:
    """Deterministic id of (D, champion versions): reruns with the same champions give the same id."""
    key = as_of_date + "|" + "|".join(f"{m}={versions.get(m) or '-'}" for m in MODELS)
    return hashlib.sha1(key.encode()).hexdigest()


def scored_at(as_of_date: str) -> dt.datetime:
    """Logical scoring time: the end of day D (UTC). Deterministic, so reruns give identical rows."""
    return dt.datetime.combine(dt.date.fromisoformat(as_of_date) + dt.timedelta(days=1), dt.time())


def missing_columns(required: list[str], present: list[str]) -> list[str]:
    have = set(present)
    return [c for c in required if c not in have]


def _resolve(name: str) -> Champion:
    from ml.registry import CHAMPION, alias_version, signature_columns

    version = alias_version(name, CHAMPION)
    if version is None:
        raise ScoringError(f"models:/{name}@{CHAMPION} does not exist: no {name} model has been promoted. "
                           "Run `c360 train` (or `make train`) first; nothing was written.")
    uri = f"models:/{name}/{version.version}"
    return Champion(name, str(version.version), uri, signature_columns(uri), trained_horizon(version))


def trained_horizon(version) -> int | None:
    """The label horizon (days) a registered version was trained for: its `horizon_days` tag, else its training
    run's `horizon_days` parameter (versions registered before the tag existed); None when neither says."""
    value = (version.tags or {}).get("horizon_days")
    if value is None and version.run_id:
        import mlflow

        try:
            value = mlflow.MlflowClient().get_run(version.run_id).data.params.get("horizon_days")
        except Exception:  # a run that cannot be read must not stop scoring: the row then says null
            value = None
    try:
        return int(float(value)) if value is not None else None
    except ValueError:
        return None


def _deciles(df, score_col: str, out_col: str):
    """ntile(10) over the rows with a score, ascending, ties broken by customer_id: 10 = highest score.

    Partitioned by "has no score", so rows without one sit in their own window (and get null) instead of being
    filtered out and joined back.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    score = F.col(score_col)
    w = Window.partitionBy(score.isNull()).orderBy(score.asc(), F.col("customer_id").asc())
    return df.withColumn(out_col, F.when(score.isNotNull(), F.ntile(10).over(w).cast("int")))


def score_customers(snapshot, churn_model, churn: Champion, clv_model, clv: Champion):
    """(customer_id, churn_probability, p_alive, expected_purchases, predicted_value_eur, deciles, churn reasons)
    per customer.

    Every customer of the snapshot gets a row; those outside ml.features.POPULATION_FILTER (never ordered)
    have null scores, deciles and reasons. One pass: the buyers' rows go through the churn pipeline (and its reason
    codes, ml.reasons, from the same transformed rows) and then, with churn_probability added, through the CLV
    pipeline (no join of two scored copies); the other customers are appended with nulls. The result is one
    partition: the deciles need a global order and the table is one file.
    """
    from pyspark.sql import functions as F

    from ml.features import POPULATION_FILTER, prepare_features, split_columns
    from ml.reasons import churn_explainer, with_churn_reasons

    inputs = list(dict.fromkeys([*churn.columns, *clv.columns]))
    buyers = prepare_features(snapshot.where(POPULATION_FILTER), *split_columns(inputs)).select("customer_id", *inputs)
    churned = churn_model.transform(buyers)
    explainer = churn_explainer(churn_model, churned)
    if explainer is None:
        log.warning("%s v%s is neither a logistic regression nor a GBT pipeline: no churn reasons (null columns)",
                    churn.name, churn.version)
    else:
        log.info("churn reasons from %s v%s: %s contributions over %d features", churn.name, churn.version,
                 explainer.kind, len(explainer.features))
    # each pipeline adds its own working columns (f_*, features, ...): keep only what the next one reads
    with_churn = with_churn_reasons(churned, explainer).select(
        "customer_id", *clv.columns, F.col("prediction").cast("double").alias("churn_probability"), *REASON_COLUMNS)
    clv_out = clv_model.transform(with_churn)
    extra = [F.col(c).cast("double").alias(c) if c in clv_out.columns else F.lit(None).cast("double").alias(c)
             for c in ("p_alive", "expected_purchases")]
    scored = clv_out.select("customer_id", "churn_probability", *extra,
                            F.greatest(F.col("prediction").cast("double"), F.lit(0.0)).alias("predicted_value_eur"),
                            *REASON_COLUMNS)
    others = snapshot.where(f"NOT ({POPULATION_FILTER})").select(
        "customer_id", *[F.lit(None).cast("string" if c in REASON_COLUMNS else "double").alias(c)
                         for c in scored.columns[1:]])
    out = scored.unionByName(others).repartition(1)
    out = _deciles(out, "churn_probability", "churn_decile")
    return _deciles(out, "predicted_value_eur", "value_decile")


def recommend_customers(spark, snapshot, model, events_path: Path, products_path: Path | None, as_of_date: str,
                        n: int = TOP_N):
    """(customer_id, recommendations) for every customer of `snapshot`: the recommender champion's top-n as an
    array of (product_id, score, source), from the interactions known at D (`ml.recommender.recommendation_lists`).
    A popularity-baseline champion (`ml.recommender.popularity_model`) gives the popular lists alone (sources
    `category_popular`, `popular`), computed from the same interactions.
    """
    from pyspark.sql import functions as F

    from ml import recommender
    from spark_jobs.common import read_events

    events = read_events(spark, events_path, as_of_date)
    products = None
    if products_path is not None:
        products = (spark.read.parquet(str(products_path))
                    .select(F.col("product_id").cast("string"), F.col("category").cast("string"))
                    .dropDuplicates(["product_id"]))
    # read once, used three times: favourite categories, popularity and the purchases never to recommend
    strength = recommender.interaction_strength(events, as_of_date).cache()
    # = known_purchases(events, D): strength covers every purchase before the end of D (purchase has a weight)
    seen = strength.where("purchased").select("customer_id", "product_id")
    favourite = recommender.favourite_categories(strength, products).withColumnRenamed(
        "favourite_category", "fav_events")
    who = snapshot.select("customer_id", *(["favourite_category"] if "favourite_category" in snapshot.columns
                                           else [])).join(favourite, "customer_id", "left")
    if "favourite_category" in snapshot.columns:
        fav = F.coalesce("fav_events", F.col("favourite_category").cast("string"))
    else:
        fav = F.col("fav_events")
    who = who.select("customer_id", fav.alias("favourite_category"))
    lists = recommender.recommendation_lists(model, who, seen, recommender.popularity(strength, products), n=n)
    return lists, strength


# --------------------------------------------------------------------------------------------------
# atomic partition replacement
# --------------------------------------------------------------------------------------------------

def _write_temp(df, table_root: Path, partition: str) -> Path:
    table_root.mkdir(parents=True, exist_ok=True)
    # what a killed run of this partition left behind (hidden, never read): one scoring job per date runs at a
    # time (the DAG's max_active_runs and the rerun is this job), so they are nobody's work in progress
    for leftover in [*table_root.glob(f".{partition}.tmp-*"), *table_root.glob(f".{partition}.old-*")]:
        log.info("removing %s, left by an interrupted run", leftover)
        shutil.rmtree(leftover, ignore_errors=True)
    tmp = table_root / f".{partition}.tmp-{uuid.uuid4().hex[:8]}"
    df.write.mode("overwrite").parquet(str(tmp))
    return tmp


def _swap(tmp: Path, final: Path) -> None:
    """Rename `tmp` over `final` (same parent): readers see the old or the new partition, never a half one."""
    old = None
    if final.exists():
        old = final.with_name(f".{final.name}.old-{uuid.uuid4().hex[:8]}")
        final.rename(old)
    tmp.rename(final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


# --------------------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------------------

def _input_paths(settings, as_of_date: str, interactions: str | None, products: str | None,
                 recommendations: bool) -> tuple[Path, Path, Path]:
    """(snapshot, events, products) paths; ScoringError before anything runs when a required input is missing."""
    fs = settings.feature_store_dir
    snapshot_path = fs / "customer_features" / f"as_of_date={as_of_date}"
    if not snapshot_path.is_dir():
        raise ScoringError(f"no feature snapshot {snapshot_path}: run the nightly job (dbt build + feature export) "
                           f"for {as_of_date} first; nothing was written.")
    events_path = Path(interactions) if interactions else fs / "interactions"
    if recommendations and not events_path.exists():
        raise ScoringError(f"no interaction events at {events_path} (contract: docs/models.md, 'Recommender "
                           "input'): the recommender and its popularity fallback need them. Export them first or "
                           "pass --no-recommendations; nothing was written.")
    return snapshot_path, events_path, Path(products) if products else fs / "products"


def resolve_champions(names: dict[str, str], needed: tuple[str, ...], settings) -> dict[str, Champion]:
    """The @champion version of each needed model, pinned for the whole run (warns on a horizon mismatch)."""
    with step("resolving @champion aliases"):
        champions = {m: _resolve(names[m]) for m in needed}
    configured = {"churn": settings.churn_horizon_days, "clv": settings.value_horizon_days}
    for m, horizon in configured.items():
        if champions[m].horizon_days is not None and champions[m].horizon_days != horizon:
            log.warning("%s v%s was trained for a %d-day horizon but the configured one is %d days: its scores are "
                        "about %d days (written on every row); retrain to score the configured horizon",
                        names[m], champions[m].version, champions[m].horizon_days, horizon,
                        champions[m].horizon_days)
    return champions


def check_signatures(snapshot_columns: list[str], champions: dict[str, Champion], as_of_date: str) -> None:
    for m in ("churn", "clv"):
        missing = missing_columns(champions[m].columns, snapshot_columns)
        if missing:
            raise ScoringError(f"feature snapshot {as_of_date} lacks column(s) {missing} that "
                               f"{champions[m].name} v{champions[m].version} needs (its signature); retrain or fix "
                               "the feature export; nothing was written.")


def with_score_metadata(scores, as_of_date: str, run_id: str, versions: dict[str, str | None],
                        champions: dict[str, Champion]):
    """The scores table's row: the scores plus the run, the versions and the horizons they are about."""
    from pyspark.sql import functions as F

    return scores.withColumns({
        "as_of_date": F.lit(as_of_date).cast("date"), "run_id": F.lit(run_id),
        "churn_model_version": F.lit(versions["churn"]),
        "clv_model_version": F.lit(versions["clv"]),
        "recommender_model_version": F.lit(versions["recommender"]).cast("string"),
        "feature_snapshot_date": F.lit(as_of_date).cast("date"),
        # UTC wall time without a zone: Parquet TIMESTAMP (isAdjustedToUTC=false), DuckDB TIMESTAMP
        "scored_at": F.lit(scored_at(as_of_date).isoformat(sep=" ")).cast("timestamp_ntz"),
        # what the probabilities and values are about: the horizons the champions were trained for
        "churn_horizon_days": F.lit(champions["churn"].horizon_days).cast("int"),
        "value_horizon_days": F.lit(champions["clv"].horizon_days).cast("int"),
    })


def recommendation_rows(lists, as_of_date: str, run_id: str, version: str | None):
    """One row per (customer, rank) with the run and the recommender version."""
    from pyspark.sql import functions as F

    from ml.recommender import explode_recommendations

    # sort the customers' lists (one row each) in one partition, then explode: rows come out in
    # (customer_id, rank) order without sorting n times as many rows
    recs = explode_recommendations(lists.repartition(1).sortWithinPartitions("customer_id"))
    return recs.withColumns({"as_of_date": F.lit(as_of_date).cast("date"), "run_id": F.lit(run_id),
                             "recommender_model_version": F.lit(version)})


def _write_partitions(spark, frames: dict[str, object], root: Path, partition: str) -> dict[str, int]:
    """Write every table's partition to a temp dir, then swap them all in: rows per table. On any failure the temps
    are removed and the previous partitions stay. `frames`: table -> (step label, function building its DataFrame),
    so each table is computed and written inside its own step (the phases the benchmark times)."""
    temps: list[tuple[Path, Path]] = []
    counts: dict[str, int] = {}
    try:
        for table, (label, make) in frames.items():
            with step(label):
                tmp = _write_temp(make(), root / table, partition)
                temps.append((tmp, root / table / partition))
                counts[table] = spark.read.parquet(str(tmp)).count()  # from the Parquet footers: no recompute
    except BaseException:
        for tmp, _ in temps:
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    with step("swapping in the new partitions"):
        for tmp, final in temps:
            _swap(tmp, final)
    return counts


def score(as_of_date: str, *, model_prefix: str = "", interactions: str | None = None, products: str | None = None,
          recommendations: bool = True, spark=None) -> int:
    import mlflow

    from c360.config import get_settings

    dt.date.fromisoformat(as_of_date)  # validates the format
    settings = get_settings()
    _, events_path, products_path = _input_paths(settings, as_of_date, interactions, products, recommendations)
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    mlflow.set_registry_uri(settings.mlflow_tracking_uri)
    names = {m: f"{model_prefix}{m}" for m in MODELS}
    needed = MODELS if recommendations else ("churn", "clv")
    champions = resolve_champions(names, needed, settings)
    versions = {m: (champions[m].version if m in champions else None) for m in MODELS}
    run_id = scoring_run_id(as_of_date, versions)
    log.info("scoring %s with %s; run_id %s", as_of_date,
             ", ".join(f"{names[m]} v{v}" for m, v in versions.items() if v), run_id)

    own_session = spark is None
    if own_session:
        with step(f"starting Spark on {settings.spark_master}"):
            spark = build_spark("c360-score", settings.spark_master)
    try:
        from spark_jobs.common import read_snapshot

        spark.conf.set("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")
        snapshot = read_snapshot(spark, settings.feature_store_dir / "customer_features", as_of_date)
        check_signatures(snapshot.columns, champions, as_of_date)
        with step("loading models"):
            models = {m: mlflow.spark.load_model(champions[m].uri) for m in needed}
        if recommendations:
            from ml.recommender import is_popularity_model

            if is_popularity_model(models["recommender"]):
                # registered when ALS missed its floors: the same lists and contract, from the popular products
                log.info("%s v%s is the popularity baseline: recommending the most popular products (favourite "
                         "category first) each customer has not bought", names["recommender"],
                         champions["recommender"].version)
        started = time.perf_counter()
        cached: list = []

        def scores():
            out = score_customers(snapshot, models["churn"], champions["churn"], models["clv"], champions["clv"])
            # one partition already (coalesce(1) only guarantees it): sorting within it orders the file
            # without orderBy's range-partitioning pass, which would compute everything twice
            out = with_score_metadata(out, as_of_date, run_id, versions, champions)
            return out.coalesce(1).sortWithinPartitions("customer_id").select(SCORES_COLUMNS)

        def recs():
            lists, strength = recommend_customers(spark, snapshot, models["recommender"], events_path,
                                                  products_path if products_path.exists() else None, as_of_date)
            cached.append(strength)
            return recommendation_rows(lists, as_of_date, run_id, versions["recommender"]).select(
                RECOMMENDATION_COLUMNS)

        frames = {"scores": ("scoring churn and CLV", scores)}
        if recommendations:
            frames["recommendations"] = ("recommending", recs)
        counts = _write_partitions(spark, frames, settings.scores_dir, f"dt={as_of_date}")
        for df in cached:
            df.unpersist()
        _log_summary(settings.scores_dir, as_of_date, counts, time.perf_counter() - started, run_id, versions, names)
        return 0
    finally:
        if own_session:
            spark.stop()


def _log_summary(root: Path, as_of_date: str, counts: dict[str, int], elapsed: float, run_id: str,
                 versions: dict, names: dict) -> None:
    partition = f"dt={as_of_date}"
    n_customers = counts["scores"]
    rate = n_customers / elapsed if elapsed > 0 else float("inf")
    log.info("scored %d customers of %s in %.1fs (%.0f customers/s)", n_customers, as_of_date, elapsed, rate)
    log.info("wrote %s (%d rows)", root / "scores" / partition, n_customers)
    if "recommendations" in counts:
        log.info("wrote %s (%d rows, top %d per customer)", root / "recommendations" / partition,
                 counts["recommendations"], TOP_N)
    log.info("run_id %s; versions %s", run_id, {names[m]: v for m, v in versions.items()})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m spark_jobs.score", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true")
    add_arguments(parser)
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    setup_logging(args.verbose)
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    try:
        return run(args)
    except ScoringError as exc:
        log.error("%s", exc)
        return 2


if __name__ == "__main__":
    sys.exit(main())
