"""Train the churn, CLV and recommender models in Spark, log them to MLflow and promote them by gates.

    python -m spark_jobs.train --model churn|clv|recommender|all [--as-of-date YYYY-MM-DD] ...

For each model: pick a training snapshot and a later, fully labelled holdout snapshot (time-based
holdout), fit, evaluate the model, its baselines and the current @champion on the same holdout, log
everything to one MLflow run, register the model as @challenger and move @champion if the gates pass.
Paths, the Spark master and the MLflow store come from c360.config (environment variables).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path

from spark_jobs.common import build_spark, log, setup_logging, snapshot_dates, step

MODELS = ("churn", "clv", "recommender")
EXPERIMENT = "c360-models"


@dataclass
class Options:
    models: list[str]
    as_of_date: str | None
    train_date: str | None = None
    holdout_date: str | None = None
    train_dates: list[str] | None = None
    train_snapshots: int = 1
    min_gap_days: int | None = None
    churn_horizon_days: int = 90
    value_horizon_days: int = 180
    rec_holdout_days: int = 30
    rec_top_n: int = 10
    rec_grid: str = "champion"
    half_life_days: float = 60.0
    als_rank: int | None = None
    als_reg_param: float | None = None
    als_alpha: float | None = None
    gbt_iterations: int = 60
    gate_margin: float | None = None
    promote: bool = True
    allow_overlap: bool = True
    experiment: str = EXPERIMENT
    model_prefix: str = ""
    interactions: str | None = None
    products: str | None = None
    seed: int = 7
    extra: dict = field(default_factory=dict)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of the train command (also usable as a `c360 train` sub-command)."""
    parser.add_argument("--model", choices=[*MODELS, "all"], default="all", help="which model(s) to train")
    parser.add_argument("--as-of-date", help="latest data date (default: the newest feature snapshot)")
    parser.add_argument("--train-date", help="training snapshot (default: newest labelled one a horizon before "
                                             "the holdout)")
    parser.add_argument("--holdout-date", help="holdout snapshot (default: newest labelled one <= as-of date)")
    parser.add_argument("--train-snapshots", type=int, default=1,
                        help="stack the N newest labelled snapshots up to the training date (more rows and seasons); "
                             "fewer when fewer exist, with a warning that says how many and why")
    parser.add_argument("--train-dates", help="comma-separated training snapshot dates (YYYY-MM-DD,...), each with "
                                              "features and labels, all before the holdout; overrides --train-date "
                                              "and --train-snapshots")
    parser.add_argument("--min-gap-days", type=int,
                        help="default training snapshot: the newest labelled one at least this many days before the "
                             "holdout (default: the horizon, so label windows do not overlap)")
    # the label horizons the dbt project used (same environment variables, c360.config)
    from c360.config import get_settings

    settings = get_settings()
    parser.add_argument("--churn-horizon-days", type=int, default=settings.churn_horizon_days)
    parser.add_argument("--value-horizon-days", type=int, default=settings.value_horizon_days)
    parser.add_argument("--rec-holdout-days", type=int, default=30, help="recommender holdout window (days)")
    parser.add_argument("--rec-top-n", type=int, default=10)
    parser.add_argument("--rec-grid", choices=["champion", "none", "small"], default="champion",
                        help="ALS hyper-parameters: 'champion' reuses the current champion's (the small grid when "
                             "there is none), 'small' searches a grid on a validation window before the holdout "
                             "(re-tuning), 'none' takes the defaults or --als-*")
    parser.add_argument("--half-life-days", type=float, default=60.0, help="decay of interaction strength")
    parser.add_argument("--als-rank", type=int, help="ALS rank with --rec-grid none (default 8)")
    parser.add_argument("--als-reg-param", type=float, help="ALS regParam with --rec-grid none (default 0.1)")
    parser.add_argument("--als-alpha", type=float, help="ALS alpha with --rec-grid none (default 1.0)")
    parser.add_argument("--gbt-iterations", type=int, default=60)
    parser.add_argument("--gate-margin", type=float, help="override the required improvement over @champion")
    parser.add_argument("--no-promote", action="store_true", help="register as @challenger only")
    parser.add_argument("--no-overlap", action="store_true",
                        help="fail instead of training on a snapshot whose label window overlaps the holdout's")
    parser.add_argument("--experiment", default=EXPERIMENT)
    parser.add_argument("--model-prefix", default="", help="prefix of registered model names (e.g. 'dev_')")
    parser.add_argument("--interactions", help="interaction events Parquet (default: <feature_store>/interactions)")
    parser.add_argument("--products", help="products Parquet with product_id, category "
                                           "(default: <feature_store>/products, optional)")
    parser.add_argument("--seed", type=int, default=7)


def options_from_args(args: argparse.Namespace) -> Options:
    return Options(
        models=list(MODELS) if args.model == "all" else [args.model],
        as_of_date=args.as_of_date, train_date=args.train_date, holdout_date=args.holdout_date,
        train_dates=[d.strip() for d in args.train_dates.split(",") if d.strip()] if args.train_dates else None,
        train_snapshots=max(1, args.train_snapshots), min_gap_days=args.min_gap_days,
        churn_horizon_days=args.churn_horizon_days, value_horizon_days=args.value_horizon_days,
        rec_holdout_days=args.rec_holdout_days, rec_top_n=args.rec_top_n, rec_grid=args.rec_grid,
        half_life_days=args.half_life_days, als_rank=args.als_rank, als_reg_param=args.als_reg_param,
        als_alpha=args.als_alpha, gbt_iterations=args.gbt_iterations, gate_margin=args.gate_margin,
        promote=not args.no_promote, allow_overlap=not args.no_overlap, experiment=args.experiment,
        model_prefix=args.model_prefix, interactions=args.interactions, products=args.products, seed=args.seed,
    )


# --------------------------------------------------------------------------------------------------
# dates
# --------------------------------------------------------------------------------------------------

def _d(s: str) -> dt.date:
    return dt.date.fromisoformat(s)


def choose_dates(feature_dates: list[str], label_dates: list[str], as_of: str, horizon_days: int, *,
                 train_date: str | None = None, holdout_date: str | None = None,
                 allow_overlap: bool = True, min_gap_days: int | None = None) -> tuple[str, str, int]:
    """(train_date, holdout_date, gap_days) for a time-based holdout.

    The holdout is the newest snapshot <= as_of that has features and labels; the training snapshot
    the newest labelled one at least `horizon_days` earlier, so its label window ends before the
    holdout starts. With too short a history it falls back (if allowed) to the newest labelled
    snapshot before the holdout - its customers have the longest histories, like the ones it will score
    (the oldest one of a young shop has customers a few weeks old) - whose label window then overlaps
    the holdout's: reported as gap_days < horizon.
    `min_gap_days` (< horizon) asks for that overlap on purpose: the newest snapshot at least that many
    days before the holdout (more recent history for the model, at the price of shared label days).
    """
    gap_needed = horizon_days if min_gap_days is None else min_gap_days
    if gap_needed < horizon_days and not allow_overlap:
        raise ValueError(f"min_gap_days {gap_needed} < horizon {horizon_days} makes label windows overlap")
    usable = sorted(set(feature_dates) & set(label_dates))
    if holdout_date is None:
        candidates = [d for d in usable if d <= as_of]
        if not candidates:
            raise ValueError(f"no snapshot with features and labels on or before {as_of} "
                             f"(labelled snapshots: {usable[-5:] or 'none'}); labels appear once the horizon "
                             "after a snapshot is fully loaded")
        holdout_date = candidates[-1]
    elif holdout_date not in usable:
        raise ValueError(f"holdout snapshot {holdout_date} lacks features or labels (labelled: {usable[-5:]})")
    if train_date is None:
        limit = (_d(holdout_date) - dt.timedelta(days=gap_needed)).isoformat()
        earlier = [d for d in usable if d <= limit]
        if earlier:
            train_date = earlier[-1]
        else:
            before = [d for d in usable if d < holdout_date]
            if not before or not allow_overlap:
                raise ValueError(f"no labelled snapshot on or before {limit} ({gap_needed} days before the "
                                 f"holdout {holdout_date}) to train on; load more history or pass --train-date")
            train_date = before[-1]  # the latest fully labelled snapshot: the most history behind its customers
    elif train_date not in usable:
        raise ValueError(f"training snapshot {train_date} lacks features or labels (labelled: {usable[-5:]})")
    if train_date >= holdout_date:
        raise ValueError(f"training snapshot {train_date} must be before the holdout {holdout_date}")
    gap = (_d(holdout_date) - _d(train_date)).days
    if gap < horizon_days:
        log.warning("training snapshot %s is less than %d days before the holdout %s: label windows overlap",
                    train_date, horizon_days, holdout_date)
    return train_date, holdout_date, gap


HORIZON_COLUMNS = {"labels_churn": ("churn_horizon_days", "C360_CHURN_HORIZON_DAYS"),
                   "labels_value": ("value_horizon_days", "C360_VALUE_HORIZON_DAYS")}


def check_label_horizon(root: Path, table: str, dates: list[str], expected: int) -> None:
    """Refuse labels built with another horizon than the one training is configured for (Settings, the same
    environment variable dbt reads): a model trained on 60-day labels and reported as a 90-day model would be
    silently wrong. Reads only the horizon column of each partition."""
    import pyarrow.parquet as pq

    column, env = HORIZON_COLUMNS[table]
    for d in dates:
        path = root / table / f"as_of_date={d}"
        found: set[int] = set()
        for f in sorted(path.glob("*.parquet")):
            if column not in pq.read_schema(f).names:
                log.warning("%s has no %s column (labels built before horizons were recorded): cannot check them",
                            f, column)
                continue
            found |= {v for v in pq.read_table(f, columns=[column]).column(0).to_pylist() if v is not None}
        if found and found != {expected}:
            raise ValueError(
                f"labels {path} were built with a {'/'.join(map(str, sorted(found)))}-day horizon, but training is "
                f"configured for {expected} days ({env}). Use one setting for both: set {env} to the horizon you "
                f"want and rebuild the labels (dbt: `dbt build -s {table} --full-refresh`, then export the feature "
                "store), or train with the labels' horizon.")


def stacked_dates(label_dates: list[str], train_date: str, n: int, *, horizon_days: int | None = None) -> list[str]:
    """The training date and up to n-1 earlier labelled snapshots (newest first). When fewer than n exist, says how
    many and why (a warning): a snapshot has labels once its horizon has passed, so a history of H days holds
    labelled snapshots only in its first H - horizon days."""
    available = sorted([d for d in label_dates if d <= train_date], reverse=True)
    chosen = available[:max(1, n)]
    if len(chosen) < n:
        why = (f"only {len(available)} labelled snapshot(s) exist on or before the training date {train_date} "
               f"({', '.join(reversed(available)) or 'none'})")
        if horizon_days:
            why += (f": labels need the {horizon_days}-day horizon after a snapshot to be fully observed, so a "
                    "longer history (or a shorter horizon) gives more")
        log.warning("asked for %d training snapshots, using %d: %s", n, len(chosen), why)
    return chosen


def explicit_train_dates(dates: list[str], usable: list[str], holdout_date: str) -> list[str]:
    """--train-dates: each must have features and labels and be before the holdout; newest first."""
    bad = [d for d in dates if d not in usable]
    if bad:
        raise ValueError(f"training snapshot(s) {bad} lack features or labels (labelled snapshots: "
                         f"{', '.join(usable[-8:]) or 'none'})")
    late = [d for d in dates if d >= holdout_date]
    if late:
        raise ValueError(f"training snapshot(s) {late} are not before the holdout {holdout_date}")
    return sorted(set(dates), reverse=True)


# --------------------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------------------

def run(args: argparse.Namespace) -> int:
    return train(options_from_args(args))


def train(opts: Options, spark=None) -> int:
    """Train the models of `opts`, print one JSON line with the results; 0 on success."""
    results = train_models(opts, spark)
    print(json.dumps(results, default=str))
    return 0


def train_models(opts: Options, spark=None) -> list[dict]:
    """Train the models of `opts` and return one result dict per model (version, run_id, gates, headline)."""
    from c360.config import get_settings
    from ml.registry import DeploymentAudit, configure
    from spark_jobs import training

    settings = get_settings()
    own_session = spark is None
    if own_session:
        with step(f"starting Spark on {settings.spark_master}"):
            spark = build_spark("c360-train", settings.spark_master)
    try:
        configure(settings.mlflow_tracking_uri, opts.experiment, settings.mlflow_artifact_root)
        audit = DeploymentAudit(settings.deployments_audit_path)
        fs = settings.feature_store_dir
        feature_dates = snapshot_dates(fs / "customer_features")
        as_of = opts.as_of_date or (feature_dates[-1] if feature_dates else None)
        log.info("training %s as of %s; feature store %s; MLflow %s", ",".join(opts.models), as_of, fs,
                 settings.mlflow_tracking_uri)
        results = []
        for name in opts.models:
            if name in ("churn", "clv"):
                if as_of is None:
                    raise FileNotFoundError(f"no feature snapshots under {fs / 'customer_features'}: run the "
                                            "nightly job (dbt build + feature export) first")
                labels = "labels_churn" if name == "churn" else "labels_value"
                horizon = opts.churn_horizon_days if name == "churn" else opts.value_horizon_days
                train_date, holdout_date, gap = choose_dates(
                    feature_dates, snapshot_dates(fs / labels), as_of, horizon,
                    train_date=max(opts.train_dates) if opts.train_dates else opts.train_date,
                    holdout_date=opts.holdout_date, allow_overlap=opts.allow_overlap,
                    min_gap_days=opts.min_gap_days)
                log.info("%s: train snapshot %s, holdout snapshot %s (%d days apart)", name, train_date,
                         holdout_date, gap)
                if opts.train_dates:
                    usable = sorted(set(feature_dates) & set(snapshot_dates(fs / labels)))
                    train_dates = explicit_train_dates(opts.train_dates, usable, holdout_date)
                else:
                    train_dates = stacked_dates(snapshot_dates(fs / labels), train_date, opts.train_snapshots,
                                                horizon_days=horizon)
                check_label_horizon(fs, labels, [*train_dates, holdout_date], horizon)
                if len(train_dates) > 1:
                    log.info("%s: stacking training snapshots %s", name, ", ".join(train_dates))
                fn = training.train_churn if name == "churn" else training.train_clv
                with step(f"{name} model"):
                    results.append(fn(spark, fs, labels, train_dates, holdout_date, opts, audit))
            else:
                path = Path(opts.interactions) if opts.interactions else fs / "interactions"
                if not (path.is_dir() and next(path.glob("**/*.parquet"), None)) and not path.is_file():
                    # a transactions-only shop: no product interactions (the dbt model needs a product_id)
                    message = (f"recommender not trained: no product interactions at {path} (contract: "
                               "docs/models.md, 'Recommender input')")
                    if opts.models == ["recommender"]:
                        raise FileNotFoundError(message)
                    log.warning(message)
                    continue
                products = Path(opts.products) if opts.products else fs / "products"
                with step("recommender model"):
                    results.append(training.train_recommender(
                        spark, path, products if products.exists() else None, as_of, opts, audit))
        log.info("summary:")
        for r in results:
            log.info("  %-12s version %-4s %-9s champion=%s  %s  (%s)", r["model"], r["version"],
                     "PROMOTED" if r["promoted"] else "not promoted", r["champion_version"],
                     " ".join(f"{k}={v:.4g}" for k, v in r["headline"].items()), r["gates"])
        log.info("MLflow runs in experiment %r at %s; deployments audit %s", opts.experiment,
                 settings.mlflow_tracking_uri, audit.path)
        return results
    finally:
        if own_session:
            spark.stop()


def build_parser_for_tests() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m spark_jobs.train", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true")
    add_arguments(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser_for_tests().parse_args(sys.argv[1:] if argv is None else argv)
    setup_logging(args.verbose)
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
