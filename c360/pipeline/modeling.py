"""The pipeline's side of the Spark model jobs: snapshots to train on, "train when there is no champion", and
running `spark_jobs.train` / `spark_jobs.score` as child processes (the way spark-submit runs them).

Model code is in ml/ and the jobs in spark_jobs/; this module only decides what to run and runs it. The Airflow
tasks (c360.pipeline.tasks) and `c360 nightly` call it.

Why child processes: a Spark driver is a JVM started by the first SparkSession of a process and keeps its memory
settings for the life of that process; `airflow dags test` (and a LocalExecutor task) would otherwise host several
JVMs' worth of state in one Python process. A child process per job also streams its log into the task log and
fails the task with the job's own message.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import subprocess
import sys
from collections.abc import Iterable
from datetime import date, timedelta
from pathlib import Path

from c360.config import DEFAULT_BOOTSTRAP_TRAIN_ARGS, DEFAULT_TRAIN_ARGS, Settings, get_settings  # noqa: F401

log = logging.getLogger(__name__)

MODELS = ("churn", "clv", "recommender")
# Extra arguments of the first-night training (no champion yet) and of the weekly training; see docs/models.md.
# The first night skips the ALS grid so a fresh machine gets champions in minutes; the weekly run searches it.
BOOTSTRAP_TRAIN_ARGS_ENV = "C360_BOOTSTRAP_TRAIN_ARGS"
TRAIN_ARGS_ENV = "C360_TRAIN_ARGS"
# (the defaults, and the variables' reading and checks, are in c360/config.py Settings)
# What the first night does when the very first version of a model fails its absolute floors (there is no champion
# to protect yet): "gated" (default) stops the night with the gate results; "accept" makes it @champion anyway,
# tagged and noted in the deployments audit, for sandboxes and young shops whose history is too short to beat
# the baselines yet. Never applies once a model has had a champion.
FIRST_CHAMPION_ENV = "C360_FIRST_CHAMPION"
# A young shop's history may hold no labelled snapshot a whole horizon before the holdout (CLV: 180 days) but the
# oldest one, with a month of history: a model trained there misjudges customers with longer histories (demo data:
# aggregate error -36 %, failing its floor). The first night then trains such a model once more on snapshots at least
# this many days before the holdout, whose label windows overlap the holdout's (docs/models.md, "Time-based
# holdout"); the floors still decide.
YOUNG_HISTORY_MIN_GAP_DAYS = 30
SNAPSHOT_MODELS = ("churn", "clv")
# A transactions-only shop (no product_id, no tracking) has no product interactions: churn and CLV still train and
# score; the recommender is left out, which is a note for the summary and the run report, not a failure.
NO_INTERACTIONS_NOTE = "recommender not trained: no product interactions"
NO_RECOMMENDATIONS_NOTE = "recommendations skipped: no product interactions (recommender not trained)"
# Monthly training snapshots: one every this many days back from the run date.
SNAPSHOT_SPACING_DAYS = 28


class JobFailed(RuntimeError):
    """A Spark job exited non-zero; the message carries its last log lines."""


def interactions_path(settings: Settings) -> Path:
    return Path(settings.feature_store_dir) / "interactions"


def has_interactions(settings: Settings | None = None) -> bool:
    """Whether the feature store holds any product interaction (the recommender's input, exported by the
    transform). The dbt model keeps only rows with a product_id: a transactions-only shop exports none."""
    settings = settings or get_settings()
    path = interactions_path(settings)
    return path.is_dir() and next(path.glob("**/*.parquet"), None) is not None


def trainable_models(settings: Settings | None = None) -> tuple[str, ...]:
    """The models this shop's data can train: all of them, or churn and CLV without product interactions."""
    return MODELS if has_interactions(settings) else SNAPSHOT_MODELS


def missing_champions(settings: Settings | None = None, models: Iterable[str] | None = None) -> list[str]:
    """The registered models (of `models`, default: those the data can train) without a @champion alias in the
    configured MLflow registry."""
    import mlflow

    from ml.registry import CHAMPION, alias_version

    settings = settings or get_settings()
    if models is None:
        models = trainable_models(settings)
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    mlflow.set_registry_uri(settings.mlflow_tracking_uri)
    return [m for m in models if alias_version(m, CHAMPION) is None]


def training_snapshot_dates(day: date, first_date: date, *, spacing_days: int = SNAPSHOT_SPACING_DAYS,
                            min_history_days: int = 28) -> list[date]:
    """Dates to hold feature snapshots for training: day - k * spacing, back to first_date + min_history_days.

    Anchored on the run date so every night asks for the same grid until it moves by one spacing; any labelled
    snapshot on the grid can be a training or holdout snapshot (spark_jobs.train.choose_dates).
    """
    dates = []
    d = day - timedelta(days=spacing_days)
    while d >= first_date + timedelta(days=min_history_days):
        dates.append(d)
        d -= timedelta(days=spacing_days)
    return sorted(dates)


def prepare_training_snapshots(day: date, settings: Settings | None = None) -> list[date]:
    """Backfill the monthly feature snapshots (and the labels now observable) that the warehouse lacks, and export
    them to Parquet. Returns the dates backfilled. Cheap when nothing is missing (one query)."""
    from c360.pipeline import transform
    from c360.pipeline.warehouse import connect

    settings = settings or get_settings()
    con = connect(settings, read_only=True)
    try:
        first = con.execute("select min(_dt) from raw.transactions").fetchall()[0][0]
        held = {r[0] for r in con.execute(f"select distinct as_of_date from {transform.FEATURE_TABLE}").fetchall()}
    finally:
        con.close()
    if first is None:
        return []
    wanted = training_snapshot_dates(day, first)
    missing = [d for d in wanted if d not in held]
    if missing:
        log.info("Backfilling %d training snapshot(s): %s", len(missing), ", ".join(map(str, missing)))
        transform.backfill_snapshots(missing, settings, labels_as_of=day)
    transform.export_feature_parquet(day, settings)  # writes every partition missing on disk
    return missing


def weekly_train_args(settings: Settings | None = None) -> list[str]:
    """The training job's extra arguments on the weekly run (Settings.train_args: `C360_TRAIN_ARGS`)."""
    return (settings or get_settings()).train_job_args()


def run_job(module: str, args: list[str], settings: Settings | None = None, *, tail_lines: int = 30) -> str:
    """Run `python -m <module> <args>` with the settings in its environment, streaming its output to the log.
    Returns the last line of stdout (the jobs print a JSON summary there); raises JobFailed on a non-zero exit."""
    settings = settings or get_settings()
    env = {**os.environ, **settings.as_env()}
    cmd = [sys.executable, "-m", module, *args]
    log.info("Running %s", " ".join(shlex.quote(c) for c in cmd))
    tail: list[str] = []
    last_stdout = ""
    with subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          bufsize=1) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.rstrip("\n")
            print(line, flush=True)  # into the task log / the terminal
            tail = (tail + [line])[-tail_lines:]
            if line.startswith(("{", "[")):
                last_stdout = line
    if proc.returncode != 0:
        raise JobFailed(f"{module} {' '.join(args)} failed (exit {proc.returncode}). Last lines:\n" + "\n".join(tail))
    return last_stdout


def train(day: date, settings: Settings | None = None, *, models: Iterable[str] = MODELS,
          extra_args: list[str] | None = None) -> list[dict]:
    """Train (and register, and promote by the gates) the given models as of `day` in a child Spark process.

    Without product interactions the recommender is left out with a note (result `{"model": "recommender",
    "trained": False, "note": ...}`), so the weekly training of a transactions-only shop trains churn and CLV."""
    settings = settings or get_settings()
    models = list(models)
    notes = []
    if "recommender" in models and not has_interactions(settings):
        log.info("%s (%s holds none)", NO_INTERACTIONS_NOTE, interactions_path(settings))
        models = [m for m in models if m != "recommender"]
        notes = [{"model": "recommender", "trained": False, "note": NO_INTERACTIONS_NOTE}]
        if not models:
            return notes
    if 1 < len(models) < len(MODELS):  # a subset: one job per model
        return [r for m in models for r in train(day, settings, models=[m], extra_args=extra_args)] + notes
    # the label horizons reach the job through the environment (settings.as_env), as they reach dbt
    args = ["--model", models[0] if len(models) == 1 else "all", "--as-of-date", day.isoformat(),
            *(extra_args if extra_args is not None else weekly_train_args(settings))]
    out = run_job("spark_jobs.train", args, settings)
    return (json.loads(out) if out else []) + notes


def ensure_champions(day: date, settings: Settings | None = None) -> dict:
    """The first night on a fresh machine: train the models that have no @champion yet (after backfilling the
    snapshots they need), so scoring can run. Does nothing when every model has a champion."""
    settings = settings or get_settings()
    trainable = trainable_models(settings)
    notes = [] if "recommender" in trainable else [NO_INTERACTIONS_NOTE]
    missing = missing_champions(settings, trainable)
    if not missing:
        return {"trained": [], "missing": [], "notes": notes}
    log.info("No @champion for %s: training them before scoring (first run on this registry)", ", ".join(missing))
    prepare_training_snapshots(day, settings)
    bootstrap_args = settings.bootstrap_train_job_args()
    results = train(day, settings, models=missing, extra_args=bootstrap_args)
    still = missing_champions(settings, missing)
    retry = [m for m in still if m in SNAPSHOT_MODELS and "--min-gap-days" not in bootstrap_args]
    if retry:
        log.warning("%s failed the floors when trained on snapshots a whole label horizon before the holdout; "
                    "training again on snapshots >= %d days before it (overlapping label windows: a young history)",
                    ", ".join(retry), YOUNG_HISTORY_MIN_GAP_DAYS)
        retried = train(day, settings, models=retry,
                        extra_args=[*bootstrap_args, "--min-gap-days", str(YOUNG_HISTORY_MIN_GAP_DAYS)])
        results = [r for r in results if r.get("model") not in retry] + retried
        still = missing_champions(settings, missing)
    gates = {r.get("model"): r.get("gates") for r in results if r.get("trained", True)}
    if still and settings.first_champion == "accept":
        accepted = _accept_first_versions(still, gates, settings)
        log.warning("%s=accept: made the first version(s) %s @champion although they failed their floors: %s",
                    FIRST_CHAMPION_ENV, accepted, gates)
        still = missing_champions(settings, missing)
    if still:
        raise JobFailed(
            f"Training ran but {', '.join(still)} still ha{'s' if len(still) == 1 else 've'} no @champion: the first "
            f"version did not pass the absolute floors ({gates}). Scoring needs a champion. Inspect the MLflow run, "
            "then train with more history or promote a version by hand: `c360 models promote --model <name> --version <n>` "
            "(docs/runbooks.md).")
    return {"trained": [r.get("model") for r in results if r.get("trained", True)], "missing": missing,
            "notes": notes}


def _accept_first_versions(names: list[str], gates: dict, settings: Settings) -> dict[str, str]:
    """Promote the newest version of each model that never had a champion, noting why in the audit and as a tag."""
    from mlflow import MlflowClient

    from ml.registry import DeploymentAudit, promote

    client = MlflowClient()
    audit = DeploymentAudit(settings.deployments_audit_path)
    accepted = {}
    for name in names:
        if audit.history(name, "champion"):
            continue  # it had a champion once (rolled back to none?): never bypass the gates then
        versions = client.search_model_versions(f"name = '{name}'")
        if not versions:
            continue
        newest = max(versions, key=lambda v: int(v.version))
        note = f"first champion accepted without passing its floors ({FIRST_CHAMPION_ENV}=accept): {gates.get(name)}"
        client.set_model_version_tag(name, newest.version, "accepted_without_gates", "true")
        promote(name, str(newest.version), note=note[:1000], audit=audit, client=client)
        accepted[name] = str(newest.version)
    return accepted


def score(day: date, settings: Settings | None = None, *, recommendations: bool | None = None) -> dict:
    """Score every customer of the `day` snapshot with the champions (spark_jobs.score) in a child process.

    recommendations None (the nightly): recommend when the shop has product interactions; a transactions-only shop
    gets churn and CLV scores and a note instead (the score rows then carry no recommender version, which tells
    check_scored() that no recommendations partition is expected)."""
    settings = settings or get_settings()
    note = None
    if recommendations is None:
        recommendations = has_interactions(settings)
        if not recommendations:
            note = NO_RECOMMENDATIONS_NOTE
            log.info("%s", note)
    args = ["--date", day.isoformat(), *([] if recommendations else ["--no-recommendations"])]
    out = run_job("spark_jobs.score", args, settings)
    result = json.loads(out) if out else {}
    result = result if isinstance(result, dict) else {"job": result}
    return {**result, "recommendations": recommendations, **({"note": note} if note else {})}


def scored_partition(settings: Settings, table: str, day: date) -> Path:
    """Where the scoring job publishes `table` (scores, recommendations) for `day`; dbt reads it (raw.<table>)."""
    return Path(settings.scores_dir) / table / f"dt={day.isoformat()}"


def check_scored(day: date, settings: Settings | None = None) -> dict[str, int]:
    """Rows per table the scoring job published for `day`, before dbt builds on them. Raises FileNotFoundError,
    saying what to run, when the scores are missing, or when they name a recommender version but its
    recommendations are missing (a transactions-only night scores without a recommender and has none)."""
    import pyarrow.parquet as pq

    settings = settings or get_settings()
    counts, recommender_named = {}, False
    for table in ("scores", "recommendations"):
        folder = scored_partition(settings, table, day)
        files = sorted(folder.glob("*.parquet")) if folder.is_dir() else []
        if table == "scores" and files:
            versions = pq.read_table(files, columns=["recommender_model_version"]).column(0)
            recommender_named = versions.null_count < len(versions)
        if not files and (table == "scores" or recommender_named):
            raise FileNotFoundError(f"No {table} Parquet under {folder}: the scoring job has not written {day}. "
                                    f"Run it first (c360 score --date {day}).")
        counts[table] = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
    return counts
