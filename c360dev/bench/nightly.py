"""The benchmark behind `c360 bench --size S|M|L` (c360/cli/bench.py): the nightly run's cost, stage by stage, measured on this machine.

For a size it generates a shop, loads its history up to the day before the last (setup, timed), then runs the
last day's nightly stages as separate processes, timing each (median of --repeat runs for short stages; every
stage is idempotent for its date, so repeats do the same work) and sampling the peak memory of each process
tree. Side by side in the same run: the scan floor (one DuckDB aggregate scan over the raw tables) and the
nightly after 30 days of history against after the full history. Results: bench/results/<size>-<stamp>.json/.md.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import shutil
import statistics
import sys
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from c360.config import PROJECT_ROOT
from c360.pipeline.modeling import weekly_train_args
from c360dev.bench.runner import StageResult, c360_command, run_stage

log = logging.getLogger(__name__)

SIZES = {
    "XS": {"customers": 2_000, "days": 60,  # for trying the harness itself
           "env": {"C360_CHURN_HORIZON_DAYS": "14", "C360_VALUE_HORIZON_DAYS": "14"}},
    # 180 days hold no 180-day value label: shorter horizons, so that training can run at all
    "S": {"customers": 10_000, "days": 180,
          "env": {"C360_CHURN_HORIZON_DAYS": "45", "C360_VALUE_HORIZON_DAYS": "60"}},
    "M": {"customers": 100_000, "days": 365},
    # the pandas reference holds every raw table in memory (3.1 GB peak at M), about 30 GB at L: more than 24 GB
    "L": {"customers": 1_000_000, "days": 365, "skip_pandas": "needs about 30 GB of memory at 1M customers",
          # Spark's local default heap (1 GB) is too small for a million customers' training rows
          "env": {"PYSPARK_SUBMIT_ARGS": "--driver-memory 6g pyspark-shell"},
          # the first training is set-up here, not a target: skip the 8-fit ALS tuning grid (about 35 min at 1M)
          "train_args": ["--rec-grid", "none"],
          "skip_weekly": "the targets at L are for the nightly without training; a retraining at 1M adds ~30 min",
          "skip_spark_warehouse": "the Spark SQL warehouse is measured at S and M (#16: the path for clusters)"},
}
START = date(2025, 10, 1)
SEED = 42


def _env_for(root: Path, size: str, tracking_format: str = "canonical") -> dict[str, str]:
    from c360dev.generate.vendors import TrackingFormat

    return {
        # the shop's tracking in a vendor's format exercises the adapters (docs/tracking_vendors.md); a migration
        # needs its cut-over in dbt, or the overlap days count every visit twice
        "C360_GENERATE_TRACKING_FORMAT": tracking_format,
        "C360_TRACKING_SOURCES": TrackingFormat.parse(tracking_format).tracking_sources(),
        # the benchmark measures cost, not model quality: a model missing its floors still scores
        "C360_FIRST_CHAMPION": "accept",
        **SIZES[size].get("env", {}),
        "C360_DATA_DIR": str(root / "data"),
        "LANDING_URI": str(root / "data" / "landing"),
        "WAREHOUSE_PATH": str(root / "data" / "warehouse" / "c360.duckdb"),
        "AIRFLOW_HOME": str(root / "airflow"),
        "DBT_TARGET_PATH": str(root / "dbt_target"),
        "DBT_LOG_PATH": str(root / "dbt_logs"),
    }


def _scan_floor(warehouse: Path, repeat: int) -> dict:
    """The floor: one aggregate scan per raw table, grouped by customer (what any feature build must read)."""
    import duckdb

    con = duckdb.connect(str(warehouse), read_only=True)
    queries = {
        "transactions": "SELECT customer_id, count(*), sum(amount), max(ordered_at) FROM raw.transactions GROUP BY 1",
        "tracking_events": "SELECT anonymous_id, count(*), max(occurred_at), count(DISTINCT event_type) "
                           "FROM raw.tracking_events GROUP BY 1",
    }
    seconds = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for q in queries.values():
            con.execute(f"SELECT count(*) FROM ({q})").fetchall()
        seconds.append(time.perf_counter() - t0)
    rows = sum(con.execute(f"SELECT count(*) FROM raw.{t}").fetchall()[0][0] for t in queries)
    con.close()
    return {"median_seconds": statistics.median(seconds), "seconds": seconds, "rows_scanned": rows}


def _snapshot_customers(warehouse: Path, day: date) -> int | None:
    """How many customers the night's feature snapshot holds: the population the snapshot models write a row for."""
    import duckdb

    try:
        with duckdb.connect(str(warehouse), read_only=True) as con:
            return con.execute("SELECT count(*) FROM feature_store.customer_features WHERE as_of_date = ?",
                               [day]).fetchone()[0]
    except duckdb.Error:
        return None


def _raw_rows(warehouse: Path, day: date) -> int:
    import duckdb

    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        return con.execute("SELECT coalesce(sum(landed_rows), 0) FROM raw.ingest_audit WHERE _dt = ?", [day]).fetchall()[0][0]
    finally:
        con.close()


def _customers_scored(root: Path, day: date) -> int | None:
    import pyarrow.parquet as pq

    path = root / "data" / "scores" / "scores" / f"dt={day.isoformat()}"
    return pq.read_table(path).num_rows if path.exists() else None


def _nightly(root: Path, size: str, day: date, repeat: int, log_path: Path, prefix: str = "",
             tracking_format: str = "canonical") -> list[StageResult]:
    """The nightly ingest and dbt stages for `day` on an already-loaded history; each stage is its own process."""
    env = _env_for(root, size, tracking_format)
    stages = [
        run_stage(f"{prefix}ingest", c360_command("ingest", "--date", day.isoformat()), env, repeat, log_path),
        run_stage(f"{prefix}dbt", c360_command("transform", "--date", day.isoformat()), env, repeat, log_path),
    ]
    rows = _raw_rows(Path(env["WAREHOUSE_PATH"]), day)
    for s in stages:
        s.rows = rows
    return stages


def _models(root: Path, size: str, day: date, repeat: int, log_path: Path, tracking_format: str = "canonical"
            ) -> tuple[list[StageResult], list[StageResult], list[StageResult]]:
    """(first training, weekly retraining, nightly model stages).

    First training, on the fresh registry: the snapshot backfill the history lacks, then the Spark training with
    its defaults (no champion yet, so the recommender is tuned on its grid), then `models ensure` (scoring needs
    champions even if a model missed its floors). Weekly retraining, as the c360_train DAG runs it once
    champions exist and the nightly runs have built the snapshots: the same two commands again, the training with
    the DAG's arguments (C360_TRAIN_ARGS; nothing left to backfill; the recommender reuses its champion's
    parameters). Then scoring, the segment build and the exports,
    as the nightly runs them."""
    env = _env_for(root, size, tracking_format)
    d = day.isoformat()
    training = [
        run_stage("train_snapshots", c360_command("transform", "--date", d, "--training-snapshots"), env, 1, log_path),
        run_stage("train", c360_command("train", "--as-of-date", d, *SIZES[size].get("train_args", [])), env, 1,
                  log_path),
        # not timed as part of the night: makes sure scoring has champions even if a model missed its floors
        run_stage("setup_champions", c360_command("models", "ensure", "--date", d), env, 1, log_path),
    ]
    weekly: list[StageResult] = []
    if "skip_weekly" in SIZES[size]:
        log.info("Skipping the weekly retraining (%s)", SIZES[size]["skip_weekly"])
    else:
        weekly = [
            run_stage("retrain_snapshots", c360_command("transform", "--date", d, "--training-snapshots"), env, 1,
                      log_path),
            # with the weekly DAG's arguments (C360_TRAIN_ARGS: three stacked snapshots by default)
            run_stage("retrain", c360_command("train", "--as-of-date", d, *weekly_train_args()), env, 1, log_path),
        ]
    nightly = [run_stage("score", c360_command("score", "--date", d), env, repeat, log_path)]
    nightly[0].rows = _customers_scored(root, day)
    nightly.append(run_stage("segments", c360_command("transform", "--date", d, "--scores"), env, repeat, log_path))
    nightly.append(run_stage("export", c360_command("segments", "export", "--date", d), env, repeat, log_path))
    nightly[1].rows = nightly[2].rows = nightly[0].rows
    return training, weekly, nightly


def run_benchmark(size_name: str, *, repeat: int = 3, work_dir: Path | None = None, keep: bool = False,
                  skip_history_ratio: bool = False, skip_models: bool = False, skip_pandas: bool = False,
                  skip_spark_warehouse: bool = False, tracking_format: str = "canonical") -> int:
    """Run the benchmark at one of SIZES; write bench/results/<size>-<stamp>.json/.md; 1 when a stage failed.
    tracking_format: how the generated shop lands its tracking (c360dev.generate.vendors.TrackingFormat)."""
    size = SIZES[size_name]
    root = (work_dir or PROJECT_ROOT / "bench" / "work" / size_name).resolve()
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    out_dir = PROJECT_ROOT / "bench" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    log_path = root / "stages.log"
    env = _env_for(root, size_name, tracking_format)
    last = START + timedelta(days=size["days"] - 1)
    log.info("Benchmark %s: %s customers x %s days (nightly date %s), work dir %s, stage output in %s",
             size_name, f"{size['customers']:,}", size["days"], last, root, log_path)
    stages: list[StageResult] = []

    gen = run_stage("generate", c360_command(
        "generate", "--customers", str(size["customers"]), "--days", str(size["days"]), "--seed", str(SEED),
        "--start", START.isoformat(), "--tracking-format", tracking_format), env, 1, log_path)
    stages.append(gen)
    summary_file = root / "data" / "ground_truth" / "summary.json"
    if summary_file.exists():
        gen.rows = sum(json.loads(summary_file.read_text()).get("rows", {}).values())

    # setup: all history but the last day, then the first (full) dbt build
    stages.append(run_stage("history_ingest", c360_command("ingest", "--date", (last - timedelta(days=1)).isoformat()),
                            env, 1, log_path))
    stages.append(run_stage("history_dbt", c360_command("transform", "--date", (last - timedelta(days=1)).isoformat()),
                            env, 1, log_path))
    nightly = _nightly(root, size_name, last, repeat, log_path, tracking_format=tracking_format)
    stages += nightly
    training: list[StageResult] = []
    weekly: list[StageResult] = []
    if not skip_models:
        training, weekly, model_stages = _models(root, size_name, last, repeat, log_path, tracking_format)
        stages += training + weekly + model_stages
        nightly = nightly + model_stages
    floor = _scan_floor(Path(env["WAREHOUSE_PATH"]), repeat)

    comparisons: dict = {"scan_floor": floor}
    dbt_stage = next(s for s in nightly if s.stage == "dbt")
    comparisons["dbt_nightly_vs_scan_floor"] = round(dbt_stage.median_seconds / floor["median_seconds"], 2)
    score_stage = next((s for s in nightly if s.stage == "score"), None)
    if score_stage and score_stage.rows:
        # the whole job (JVM start, model loading, recommendations, atomic writes), not just model.transform
        comparisons["scoring_customers_per_second"] = round(score_stage.rows / score_stage.median_seconds, 1)

    # the same features by dbt and by a plain pandas implementation, checked equal (bench/pandas_features.py)
    feature_json = root / "feature_build_comparison.json"
    skip_pandas = "--skip-pandas" if skip_pandas else size.get("skip_pandas")
    if skip_pandas:
        log.info("Skipping the pandas reference (%s)", skip_pandas)
        comparisons["dbt_features_vs_pandas_skipped"] = skip_pandas
    else:
        stages.append(run_stage("pandas_reference", [
            sys.executable, str(PROJECT_ROOT / "bench" / "pandas_features.py"), "--warehouse", env["WAREHOUSE_PATH"],
            "--date", last.isoformat(), "--time", str(repeat), "--out", str(feature_json)], env, 1, log_path))
    if feature_json.exists():
        comparisons["dbt_features_vs_pandas"] = json.loads(feature_json.read_text())

    if not skip_history_ratio and size["days"] > 31:
        short_root = root / "short-history"
        short_root.mkdir()
        (short_root / "data").mkdir()
        os.symlink(root / "data" / "landing", short_root / "data" / "landing")
        short_env = _env_for(short_root, size_name, tracking_format)
        day30 = START + timedelta(days=30)
        stages.append(run_stage("short_history_ingest", c360_command("ingest", "--date", (day30 - timedelta(days=1)).isoformat()),
                                short_env, 1, log_path))
        stages.append(run_stage("short_history_dbt", c360_command("transform", "--date", (day30 - timedelta(days=1)).isoformat()),
                                short_env, 1, log_path))
        short = _nightly(short_root, size_name, day30, repeat, log_path, prefix="after30d_",
                         tracking_format=tracking_format)
        stages += short
        short_dbt = next(s for s in short if s.stage == "after30d_dbt")
        comparisons["history_ratio_dbt"] = {
            "after_days": [30, size["days"] - 1],
            "seconds": [round(short_dbt.median_seconds, 2), round(dbt_stage.median_seconds, 2)],
            "ratio": round(dbt_stage.median_seconds / short_dbt.median_seconds, 2),
        }
        # the shop grows: the snapshot after a year holds more customers than after 30 days, and every snapshot model
        # writes a row per customer. Reported beside the ratio (which stays the measure) to tell growth with the
        # population from growth with the history's length.
        customers = [_snapshot_customers(Path(short_env["WAREHOUSE_PATH"]), day30),
                     _snapshot_customers(Path(env["WAREHOUSE_PATH"]), last)]
        if all(customers):
            comparisons["history_ratio_dbt"]["snapshot_customers"] = customers
            comparisons["history_ratio_dbt"]["customers_ratio"] = round(customers[1] / customers[0], 2)

    skip_spark = "--skip-spark-warehouse" if skip_spark_warehouse else size.get("skip_spark_warehouse")
    if skip_spark:
        log.info("Skipping the Spark SQL warehouse (%s)", skip_spark)
        comparisons["spark_warehouse_skipped"] = skip_spark
    else:
        spark_stages, comparisons["spark_warehouse"] = _spark_warehouse(
            root, size_name, last, repeat, log_path, tracking_format, duckdb_dbt=dbt_stage,
            duckdb_history=next(s for s in stages if s.stage == "history_dbt"))
        stages += spark_stages

    failed = [s.stage for s in stages if s.returncode != 0]
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    result = {
        "size": size_name, **size, "nightly_date": last.isoformat(), "repeat": repeat,
        "tracking_format": tracking_format,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
                    "memory_gb": round(__import__("psutil").virtual_memory().total / 2**30, 1)},
        "stages": [s.as_dict() for s in stages],
        "nightly_seconds_without_training": round(sum(s.median_seconds for s in nightly), 2),
        # a night on which the weekly retraining also runs (steady state: champions and snapshots exist)
        "nightly_seconds_with_training": round(sum(s.median_seconds for s in nightly + weekly), 2)
        if weekly else None,
        # the very first night on a fresh registry: snapshot backfill and a tuned first training
        "first_night_seconds": round(sum(s.median_seconds for s in nightly + training), 2) if training else None,
        "nightly_peak_rss_mb": max((s.peak_rss_mb for s in nightly), default=None),
        "comparisons": comparisons,
        "failed_stages": failed,
        "measured_at": stamp,
    }
    json_path = out_dir / f"{size_name}-{stamp}.json"
    json_path.write_text(json.dumps(result, indent=2))
    md_path = json_path.with_suffix(".md")
    md_path.write_text(_markdown(result))
    print(md_path.read_text())
    print(f"Results: {json_path}\n         {md_path}")
    if not keep:
        shutil.rmtree(root, ignore_errors=True)
    return 1 if failed else 0


def _spark_warehouse(root: Path, size: str, last: date, repeat: int, log_path: Path, tracking_format: str, *,
                     duckdb_dbt: StageResult, duckdb_history: StageResult) -> tuple[list[StageResult], dict]:
    """The same landed history and night on the Spark SQL warehouse (C360_WAREHOUSE=spark, Spark local[*]): its own
    data dir beside the DuckDB run's, the landing zone shared. Ingestion (with the publish to Spark), the first
    build of the history, then the night's ingest and dbt stages as _nightly runs them."""
    spark_root = root / "spark-warehouse"
    (spark_root / "data").mkdir(parents=True)
    os.symlink(root / "data" / "landing", spark_root / "data" / "landing")
    env = {**_env_for(spark_root, size, tracking_format), "C360_WAREHOUSE": "spark",
           # Spark's local default heap (1 GB) holds too little of a year of tracking events
           "PYSPARK_SUBMIT_ARGS": "--driver-memory 8g pyspark-shell"}
    day_before = (last - timedelta(days=1)).isoformat()
    stages = [run_stage("spark_history_ingest", c360_command("ingest", "--date", day_before), env, 1, log_path),
              run_stage("spark_history_dbt", c360_command("transform", "--date", day_before), env, 1, log_path)]
    night = [run_stage("spark_ingest", c360_command("ingest", "--date", last.isoformat()), env, repeat, log_path),
             run_stage("spark_dbt", c360_command("transform", "--date", last.isoformat()), env, repeat, log_path)]
    rows = _raw_rows(Path(env["WAREHOUSE_PATH"]), last)
    for s in night:
        s.rows = rows
    spark_dbt = night[1]
    figures = {
        "history_dbt_seconds": {"duckdb": round(duckdb_history.median_seconds, 2),
                                "spark": round(stages[1].median_seconds, 2)},
        "nightly_dbt_seconds": {"duckdb": round(duckdb_dbt.median_seconds, 2),
                                "spark": round(spark_dbt.median_seconds, 2)},
        "nightly_dbt_spark_over_duckdb": round(spark_dbt.median_seconds / duckdb_dbt.median_seconds, 2),
        "spark_peak_rss_mb": max(s.peak_rss_mb for s in stages + night),
    }
    return stages + night, figures


def _markdown(r: dict) -> str:
    lines = [
        f"# Benchmark {r['size']}: {r['customers']:,} customers x {r['days']} days (nightly date {r['nightly_date']})",
        "",
        f"Machine: {r['machine']['cpus']} CPUs, {r['machine']['memory_gb']} GB, Python {r['machine']['python']}. "
        f"Median of {r['repeat']} runs for nightly stages.",
        "",
        "| stage | median s | runs | peak memory MB | rows | rows/s |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for s in r["stages"]:
        rows = f"{s['rows']:,}" if s["rows"] is not None else ""
        rps = f"{s['rows_per_second']:,.0f}" if s["rows_per_second"] else ""
        status = "" if s["returncode"] == 0 else " (FAILED)"
        status += f" ({s['note']})" if s.get("note") else ""
        lines.append(f"| {s['stage']}{status} | {s['median_seconds']:.2f} | {len(s['seconds'])} | "
                     f"{s['peak_rss_mb']:,.0f} | {rows} | {rps} |")
    c = r["comparisons"]
    with_training = r.get("nightly_seconds_with_training")
    lines += ["", f"Nightly without training: **{r['nightly_seconds_without_training']:.1f} s**"
              + (f"; with the weekly retraining: **{with_training:.1f} s**" if with_training else "")
              + (f"; first night on a fresh registry (backfill, tuned first training): {r['first_night_seconds']:.1f} s"
                 if r.get("first_night_seconds") else "")
              + f"; peak memory of a nightly stage: {r.get('nightly_peak_rss_mb') or 0:,.0f} MB", "",
              "| comparison | figure |", "|---|---|",
              f"| scan floor (one aggregate scan of raw) | {c['scan_floor']['median_seconds']:.2f} s over "
              f"{c['scan_floor']['rows_scanned']:,} rows |",
              f"| nightly dbt / scan floor | {c['dbt_nightly_vs_scan_floor']}x |"]
    if "scoring_customers_per_second" in c:
        lines.append(f"| scoring job (Spark start to files written) | {c['scoring_customers_per_second']:,.0f} "
                     "customers/s |")
    if "dbt_features_vs_pandas" in c:
        f = c["dbt_features_vs_pandas"]
        verdict = "equal" if f["equal"] else "DIFFER: " + ", ".join(f["mismatched_columns"])
        lines.append(f"| dbt feature build vs pandas reference ({verdict}) | {f['dbt']['median_seconds']} s vs "
                     f"{f['pandas']['median_seconds']} s = pandas **{f['pandas_over_dbt']}x** |")
    if "history_ratio_dbt" in c:
        h = c["history_ratio_dbt"]
        lines.append(f"| nightly dbt after {h['after_days'][1]} vs {h['after_days'][0]} days of history | "
                     f"{h['seconds'][1]} s vs {h['seconds'][0]} s = **{h['ratio']}x** |")
        if "snapshot_customers" in h:
            lines.append(f"| customers in the night's snapshot, after {h['after_days'][1]} vs {h['after_days'][0]} "
                         f"days | {h['snapshot_customers'][1]:,} vs {h['snapshot_customers'][0]:,} = "
                         f"{h['customers_ratio']}x |")
    if "spark_warehouse" in c:
        w = c["spark_warehouse"]
        lines.append(f"| first build of the history (dbt + feature export), DuckDB vs Spark SQL (local) | "
                     f"{w['history_dbt_seconds']['duckdb']} s vs {w['history_dbt_seconds']['spark']} s |")
        lines.append(f"| nightly dbt (+ feature export), DuckDB vs Spark SQL (local) | "
                     f"{w['nightly_dbt_seconds']['duckdb']} s vs {w['nightly_dbt_seconds']['spark']} s = Spark "
                     f"**{w['nightly_dbt_spark_over_duckdb']}x** |")
    return "\n".join(lines) + "\n"
