"""Run the dbt project for a logical date and export feature-store snapshots to Parquet for Spark.

The SQL lives in dbt_project/; this module only invokes dbt (in-process, dbtRunner) with the project's settings
and copies finished tables to Parquet. The Airflow DAG calls build(), export_feature_parquet() and friends.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

from c360.config import Settings, get_settings, process_environment
from c360.pipeline.dbt_failures import FailedTest, dbt_target_dir, explain_failed_tests, write_failed_tests

log = logging.getLogger(__name__)

# dbt result statuses that mean "this node did not do its job"
FAILED_STATUSES = {"error", "fail", "runtime error"}
FEATURE_TABLE = "feature_store.customer_features"
LABEL_TABLES = {"labels_churn": "churn_horizon_days", "labels_value": "value_horizon_days"}
FEATURE_STORE_SELECTOR = "path:models/feature_store"
# The recommender's inputs, exported beside the snapshots (contract: docs/models.md)
INTERACTIONS_TABLE = "feature_store.interactions"
PRODUCTS_QUERY = "select product_id, category from marts.dim_products order by product_id"
# Tonight's identity graph for the Spark readers of the interactions (spark_jobs.common.read_events): each customer id
# that is not its person's primary member, with that primary (the key of the feature store; docs/identity.md). Only
# the re-keyed ids: on a shop without duplicates the file is empty.
PERSON_KEYS_QUERY = ("select customer_id, person_customer_id from intermediate.int_person_keys "
                     "where customer_id <> person_customer_id order by customer_id")
# Everything downstream of the scores (score marts, customer_360, segments): rebuilt once the night's scores are loaded
SCORES_SELECTOR = "source:scores+"
# The env var the dbt project reads the segment definitions from (dbt_project/macros/segments.sql)
SEGMENTS_ENV = "C360_SEGMENTS_JSON"
# The env var of dbt's test_window_start var: which rows the night's scoped data tests check (test_window_start())
TEST_WINDOW_ENV = "C360_TEST_WINDOW_START"
# (the lookback - label partitions whose horizon closed this recently are re-exported - is Settings.lookback_days,
# C360_LOOKBACK_DAYS, the variable dbt's lookback_days var reads too)


class DbtRunError(RuntimeError):
    """A dbt command failed; `failures` names each failed node with its status and message."""

    def __init__(self, command: list[str], failures: list[NodeResult], message: str | None = None,
                 failed_tests: list[FailedTest] | None = None):
        self.command = command
        self.failures = failures
        self.failed_tests = failed_tests or []
        lines = [f"dbt {' '.join(command)} failed"]
        if message:
            lines.append(message)
        # the failed data tests first, each with its offending rows and what to do: the rest is detail
        for test in self.failed_tests:
            lines += test.lines()
        explained = {t.unique_id for t in self.failed_tests}
        for node in failures:
            if node.unique_id not in explained:
                lines.append(f"  {node.status}: {node.unique_id}: {node.message}")
        if failures:
            lines.append("Fix the node(s) above (dbt_project/, or the raw data they test), then rerun the date.")
        super().__init__("\n".join(lines))


class SnapshotMissing(RuntimeError):
    """The feature store has no snapshot for the date (no customers, or the dbt build did not make one): the
    same on every retry."""


@dataclass(frozen=True)
class NodeResult:
    unique_id: str
    status: str
    execution_time: float
    message: str | None = None


@dataclass
class DbtResult:
    command: list[str]
    success: bool
    elapsed_seconds: float
    nodes: list[NodeResult] = field(default_factory=list)
    # the failed data tests with their offending rows and what to do (c360/pipeline/dbt_failures.py)
    failed_tests: list[FailedTest] = field(default_factory=list)

    @property
    def failures(self) -> list[NodeResult]:
        return [n for n in self.nodes if n.status in FAILED_STATUSES]

    def summary(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for n in self.nodes:
            counts[n.status] = counts.get(n.status, 0) + 1
        return counts


@dataclass
class ExportResult:
    as_of_date: date
    # table name -> {as_of_date: (path, rows)}
    written: dict[str, dict[date, tuple[Path, int]]] = field(default_factory=dict)


def _release_duckdb() -> None:
    """dbt-duckdb can keep the warehouse open in this process after a run (a cached environment); close it so
    that the export, the next task or a test can open the file (DuckDB allows one configuration per file)."""
    try:
        from dbt.adapters.duckdb.connections import DuckDBConnectionManager
    except ImportError:  # another adapter: nothing to release
        return
    with DuckDBConnectionManager._LOCK:
        env = DuckDBConnectionManager._ENV
        if env is not None:
            with contextlib.suppress(Exception):
                env.close()
            DuckDBConnectionManager._ENV = None


def run_dbt(
    command: list[str],
    run_date: date | None = None,
    settings: Settings | None = None,
    *,
    extra_vars: dict | None = None,
    segments: dict | None = None,
    raise_on_failure: bool = True,
) -> DbtResult:
    """Run one dbt command (e.g. ["build"], ["run", "-s", "customer_features"]) in-process.

    Adds --project-dir/--profiles-dir/--target from settings, passes run_date (the dbt var `run_date`; None = the
    latest landed date) and any other dbt vars. `segments` is the segment definitions for the segment marts
    (c360.marketing.segments.segments_dbt_var()); without them those models leave their tables unchanged. Raises
    DbtRunError naming the failed nodes unless raise_on_failure is False.
    """
    from dbt.cli.main import dbtRunner  # heavy import: only when dbt actually runs

    settings = settings or get_settings()
    args = list(command) + [
        "--project-dir", str(settings.dbt_project_dir),
        "--profiles-dir", str(settings.dbt_profiles_dir),
    ]
    if command and command[0] not in ("deps", "clean", "debug"):
        args += ["--target", settings.dbt_target]
    # run_date travels as C360_RUN_DATE (read by the project's vars) rather than --vars: a changed --vars
    # forces dbt to re-parse the whole project (~4 s a night), a changed env var does not.
    if extra_vars:
        args += ["--vars", json.dumps(extra_vars)]
    env = settings.as_env()
    if run_date is not None:
        env["C360_RUN_DATE"] = run_date.isoformat()
    if command and command[0] in ("build", "test") and TEST_WINDOW_ENV not in os.environ:
        env[TEST_WINDOW_ENV] = test_window_start(settings, run_date)
    if segments is not None:
        # an env var, not --vars, for the same reason; serialized canonically so an unchanged segments.yml is
        # byte-identical every night and dbt re-parses nothing
        env[SEGMENTS_ENV] = json.dumps(segments, sort_keys=True, separators=(",", ":"))
    Path(settings.warehouse_path).parent.mkdir(parents=True, exist_ok=True)
    if settings.warehouse == "spark":
        from c360.pipeline.spark_warehouse import stop_other_session

        stop_other_session(settings)

    log.info("dbt %s", " ".join(args))
    started = time.monotonic()
    with process_environment(env):
        try:
            outcome = dbtRunner().invoke(args)
        finally:
            _release_duckdb()
    elapsed = time.monotonic() - started

    nodes: list[NodeResult] = []
    results = getattr(outcome.result, "results", None) or []
    for r in results:
        node = getattr(r, "node", None)
        nodes.append(
            NodeResult(
                unique_id=getattr(node, "unique_id", str(node)),
                status=str(getattr(r.status, "value", r.status)),
                execution_time=float(getattr(r, "execution_time", 0.0) or 0.0),
                message=getattr(r, "message", None),
            )
        )
    result = DbtResult(command=args, success=bool(outcome.success), elapsed_seconds=elapsed, nodes=nodes)
    log.info("dbt %s finished in %.1fs: %s", command[0] if command else "", elapsed, result.summary())
    if command and command[0] in ("build", "test"):
        # after _release_duckdb: the offending rows are read on a read-only connection of our own
        result.failed_tests = explain_failed_tests(settings, results, run_date) if not result.success else []
        target = dbt_target_dir(settings)
        write_failed_tests(target, _invocation_id(target), result.failed_tests)
    if raise_on_failure and not result.success:
        message = str(outcome.exception) if outcome.exception else None
        raise DbtRunError(list(command), result.failures, message, result.failed_tests)
    return result


def test_window_start(settings: Settings, run_date: date | None) -> str:
    """What the night's scoped data tests check (dbt var test_window_start; macros/tests/get_where_subquery.sql).

    Row-level tests of tables whose older rows never change check only the rows of the lookback window (''): those
    before it were checked on their own nights. Two cases need more, and only the warehouse can tell them:
    - no feature snapshot before `run_date` (a first build, or the first night rebuilt): 'all', every row;
    - the last night built is older than the window (nights were missed; the incremental models catch up from the
      day after it): that day, so every day the catch-up brings in is checked.
    A set C360_TEST_WINDOW_START wins (run_dbt does not call this then).
    """
    if run_date is None:
        return ""
    last = _last_snapshot_before(settings, run_date)
    if last is None:
        return "all"
    window_start = run_date - timedelta(days=int(settings.lookback_days))
    return (last + timedelta(days=1)).isoformat() if last + timedelta(days=1) < window_start else ""


def _last_snapshot_before(settings: Settings, run_date: date) -> date | None:
    """The latest as_of_date of the feature snapshots before run_date, or None (no warehouse, table or snapshot)."""
    if settings.warehouse == "spark":
        from c360.pipeline.spark_warehouse import table_dir

        folder = table_dir(settings, *FEATURE_TABLE.split("."))
        dates = []
        for part in folder.glob("as_of_date=*") if folder.is_dir() else []:
            with contextlib.suppress(ValueError):
                dates.append(date.fromisoformat(part.name.split("=", 1)[1]))
        return max((d for d in dates if d < run_date), default=None)
    if not Path(settings.warehouse_path).exists():
        return None
    from c360.pipeline.warehouse import connect, relation_exists

    with contextlib.closing(connect(settings, read_only=True)) as con:
        if not relation_exists(con, FEATURE_TABLE):
            return None
        return con.execute(f"select max(as_of_date) from {FEATURE_TABLE} where as_of_date < ?",
                           [run_date]).fetchone()[0]


def _invocation_id(target: Path) -> str | None:
    try:
        return json.loads((target / "run_results.json").read_text(encoding="utf-8"))["metadata"]["invocation_id"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def load_segment_definitions(segments_file: str | Path | None = None) -> dict:
    """The segment definitions for dbt (c360.marketing.segments.segments_dbt_var()), from segments.yml by default.

    Every rule is checked against the rule language (c360/marketing/segment_rules.py) and rendered here, before any dbt
    command runs: an invalid file raises SegmentConfigError naming the segment, the offending text and the allowed
    vocabulary, and the night stops with nothing in the warehouse modified. (It used to be logged and skipped by the
    first build; a rule marketing can edit must not reach dbt unchecked, and a night that silently keeps yesterday's
    segments is worse than one that stops and says why.)
    """
    from c360.marketing.segments import segments_dbt_var

    return segments_dbt_var(segments_file)


def build(
    run_date: date | None = None, settings: Settings | None = None, *, segments_file: str | Path | None = None
) -> DbtResult:
    """The nightly's first dbt step: `dbt build` (seeds, models, data tests) for the logical date, everything but
    what reads the night's scores. Those models (SCORES_SELECTOR: score marts, customer_360, segments, export rows)
    are built once, by build_scores, after the scoring job has published the date; building them here too would
    publish them first with yesterday's scores.

    segments.yml (or `segments_file`) is checked first even though no segment is built here, so a bad file stops
    the night before any dbt command: raises SegmentConfigError.
    Unit tests are left to CI (tests/test_dbt_*.py): they check SQL logic, not the night's data.
    """
    segments = load_segment_definitions(segments_file)  # validated before any dbt call
    return run_dbt(["build", "--exclude", SCORES_SELECTOR, "--exclude-resource-type", "unit_test"], run_date,
                   settings, segments=segments)


def build_scores(
    run_date: date | None = None, settings: Settings | None = None, *, segments_file: str | Path | None = None
) -> DbtResult:
    """After the scoring job has published the night's scores (Parquet, read by dbt through raw.scores /
    raw.recommendations): build everything downstream of them -
    marts.customer_scores, marts.customer_recommendations, marts.customer_360, marts.segment_members,
    segment_evaluations and segment_changes - with their data tests. Raises SegmentConfigError, before dbt runs,
    when segments.yml is invalid.
    """
    segments = load_segment_definitions(segments_file)  # validated before any dbt call
    return run_dbt(["build", "-s", SCORES_SELECTOR, "--exclude-resource-type", "unit_test"], run_date, settings,
                   segments=segments)


def backfill_snapshots(
    dates: Iterable[date], settings: Settings | None = None, *, labels_as_of: date | None = None
) -> list[DbtResult]:
    """Build feature-store snapshots for past dates (any order), then the labels that are observable.

    Only the feature-store models run per date: the intermediate tables are bitemporal, so any past date's
    snapshot can be read from them. Labels are computed once at the end for `labels_as_of` (default: latest data).
    """
    settings = settings or get_settings()
    results = []
    for d in sorted(set(dates)):
        results.append(
            run_dbt(
                ["run", "-s", FEATURE_STORE_SELECTOR, "--exclude", "labels_churn", "labels_value", "interactions"],
                d,
                settings,
            )
        )
    results.append(run_dbt(["run", "-s", "labels_churn", "labels_value", "training_set"], labels_as_of, settings))
    return results


def _table_exists(con, schema: str, table: str) -> bool:
    query = "select count(*) from information_schema.tables where table_schema = ? and table_name = ?"
    return con.execute(query, [schema, table]).fetchone()[0] > 0


def _latest_feature_date(con) -> date | None:
    return con.execute(f"select max(as_of_date) from {FEATURE_TABLE}").fetchone()[0]


def _atomic_copy(con, query: str, params: list, partition_dir: Path) -> int:
    """COPY a query to partition_dir/part-0.parquet: written under a hidden temp name, then swapped in."""
    partition_dir.parent.mkdir(parents=True, exist_ok=True)
    token = uuid.uuid4().hex[:8]
    tmp_dir = partition_dir.parent / f".tmp-{partition_dir.name}-{token}"
    old_dir = partition_dir.parent / f".old-{partition_dir.name}-{token}"
    tmp_dir.mkdir()
    try:
        rows = con.execute(f"select count(*) from ({query})", params).fetchone()[0]
        con.execute(
            f"copy ({query}) to '{(tmp_dir / 'part-0.parquet').as_posix()}' (format parquet, compression zstd)",
            params,
        )
        if partition_dir.exists():
            partition_dir.rename(old_dir)
        tmp_dir.rename(partition_dir)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        shutil.rmtree(old_dir, ignore_errors=True)
    return rows


def export_feature_parquet(
    run_date: date | None = None, settings: Settings | None = None, *, lookback_days: int | None = None
) -> ExportResult:
    """Write the as_of_date = run_date snapshot and the labels that became available to Parquet.

    Layout: <feature_store_dir>/customer_features/as_of_date=D/part-0.parquet, and the same for labels_churn and
    labels_value (one partition per labelled as_of_date). Each partition is written to a temp dir and renamed,
    so readers never see half a file and a rerun replaces the partition. The as_of_date column is the partition
    key and is not repeated inside the files.

    Also written: snapshots and labels present in the warehouse but missing on disk (backfilled dates, a missed
    export), and labels whose horizon closed within `lookback_days` of run_date (late orders may have changed them).
    The recommender's inputs go beside them: interactions/known_date=K/ for the known dates this run recomputed
    (run_date - lookback_days .. run_date) and any missing on disk, and products/ (product_id, category) replaced,
    and person_keys/ (customer_id -> person_customer_id, tonight's identity graph) replaced: the interactions stay
    per customer id as they were known, and their readers re-key them to persons with today's graph (retroactive).
    run_date None = the latest snapshot; lookback_days None = settings.lookback_days.
    """
    from c360.pipeline.warehouse import connect

    settings = settings or get_settings()
    lookback_days = settings.lookback_days if lookback_days is None else lookback_days
    root = Path(settings.feature_store_dir)
    con = connect(settings, read_only=True)
    try:
        as_of = run_date or _latest_feature_date(con)
        if as_of is None:
            raise SnapshotMissing(
                f"{FEATURE_TABLE} in {settings.warehouse_path} has no snapshot: run the dbt build for a date first"
            )
        found = con.execute(f"select count(*) from {FEATURE_TABLE} where as_of_date = ?", [as_of]).fetchone()[0]
        if found == 0:
            raise SnapshotMissing(
                f"{FEATURE_TABLE} has no rows for as_of_date={as_of}: run the dbt build for {as_of} before exporting"
            )
        result = ExportResult(as_of_date=as_of)
        result.written["customer_features"] = _export_partitions(con, FEATURE_TABLE, root / "customer_features", {as_of})
        for table, horizon_col in LABEL_TABLES.items():
            if not _table_exists(con, "feature_store", table):
                continue
            recent = {
                r[0]
                for r in con.execute(
                    f"select distinct as_of_date from feature_store.{table} where as_of_date + {horizon_col} between ? and ?",
                    [as_of - timedelta(days=lookback_days), as_of],
                ).fetchall()
            }
            result.written[table] = _export_partitions(con, f"feature_store.{table}", root / table, recent)
        if _table_exists(con, "feature_store", INTERACTIONS_TABLE.split(".")[1]):
            # the recommender's input: the known dates this run recomputed (its lookback window) + any missing
            window = {as_of - timedelta(days=i) for i in range(lookback_days + 1)}
            result.written["interactions"] = _export_partitions(
                con, INTERACTIONS_TABLE, root / "interactions", window, column="known_date",
                order_by="interaction_id")
        if _table_exists(con, "marts", "dim_products"):
            rows = _atomic_copy(con, PRODUCTS_QUERY, [], root / "products")
            result.written["products"] = {as_of: (root / "products", rows)}
        if _table_exists(con, "intermediate", "int_person_keys"):
            rows = _atomic_copy(con, PERSON_KEYS_QUERY, [], root / "person_keys")
            result.written["person_keys"] = {as_of: (root / "person_keys", rows)}
        for table, parts in result.written.items():
            log.info(
                "exported %s partition(s) of %s (%s rows) to %s",
                len(parts), table, sum(rows for _, rows in parts.values()), root / table,
            )
        return result
    finally:
        con.close()


def _export_partitions(
    con, relation: str, folder: Path, dates: set[date], *, column: str = "as_of_date", order_by: str = "customer_id"
) -> dict[date, tuple[Path, int]]:
    """Export the given dates (of the partition `column`) of a relation, plus every date it holds that is missing
    on disk. A date in `dates` that the relation does not hold (any more) loses its partition on disk."""
    held = {r[0] for r in con.execute(f"select distinct {column} from {relation}").fetchall()}
    missing = {d for d in held if not (folder / f"{column}={d.isoformat()}").exists()}
    written = {}
    for d in sorted((dates & held) | missing):
        query = f"select * exclude ({column}) from {relation} where {column} = ? order by {order_by}"
        path = folder / f"{column}={d.isoformat()}"
        written[d] = (path, _atomic_copy(con, query, [d], path))
    for d in sorted(dates - held):
        stale = folder / f"{column}={d.isoformat()}"
        if stale.exists():
            shutil.rmtree(stale)
    return written
