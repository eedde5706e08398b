"""Shared plumbing for the Spark entry points: the SparkSession builder, logging and small I/O helpers.

The master comes from configuration only (`SPARK_MASTER`: local[*] by default; spark://, yarn or
k8s:// for a cluster), so the same job runs embedded or at scale without a code change.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger("spark_jobs")

# Spark's own logging is very chatty at INFO/WARN; jobs report their progress through `log` instead.
_QUIET_LOG_LEVEL = "ERROR"


def build_spark(app_name: str, master: str, *, shuffle_partitions: int | None = None,
                extra_conf: dict[str, str] | None = None) -> SparkSession:
    """A SparkSession for `master`, bound to 127.0.0.1 and without the web UI.

    Shuffle partitions default to 2x the local cores for local masters (the Spark default of 200 is
    tuned for clusters and makes small local jobs slow); on a cluster Spark's adaptive execution decides.
    """
    builder = (
        SparkSession.builder.appName(app_name)
        .master(master)
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.sql.execution.arrow.pyspark.fallback.enabled", "true")
    )
    if master.startswith("local"):
        # Python workers (pandas UDFs) run on this machine: use this interpreter, not `python3` on the PATH
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        builder = builder.config("spark.driver.host", "127.0.0.1").config("spark.driver.bindAddress", "127.0.0.1")
        if shuffle_partitions is None:
            shuffle_partitions = 4
    if shuffle_partitions is not None:
        builder = builder.config("spark.sql.shuffle.partitions", str(shuffle_partitions))
    for key, value in (extra_conf or {}).items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel(_QUIET_LOG_LEVEL)
    return spark


def setup_logging(verbose: bool = False) -> None:
    """Plain progress logging for command-line runs (no-op if the caller configured logging already)."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    # py4j logs every gateway call at INFO.
    logging.getLogger("py4j").setLevel(logging.WARNING)


@contextmanager
def step(name: str) -> Iterator[None]:
    """Log the start and duration of one stage of a job."""
    log.info("%s ...", name)
    started = time.perf_counter()
    yield
    log.info("%s done in %.1fs", name, time.perf_counter() - started)


def snapshot_dates(root: Path) -> list[str]:
    """The as_of_date partitions present under `root` (`as_of_date=YYYY-MM-DD` folders), sorted."""
    if not root.is_dir():
        return []
    return sorted(p.name.split("=", 1)[1] for p in root.glob("as_of_date=*") if p.is_dir())


def latest_snapshot_on_or_before(root: Path, target: str) -> str | None:
    """The newest snapshot date <= target (ISO strings compare like dates), or None."""
    candidates = [d for d in snapshot_dates(root) if d <= target]
    return candidates[-1] if candidates else None


def read_snapshot(spark: SparkSession, root: Path, as_of_date: str) -> DataFrame:
    """One as_of_date partition of a feature-store table, with the as_of_date column restored as a date."""
    from pyspark.sql import functions as F

    path = root / f"as_of_date={as_of_date}"
    if not path.is_dir():
        available = ", ".join(snapshot_dates(root)[-5:]) or "none"
        raise FileNotFoundError(
            f"No snapshot {path}. Latest snapshots under {root}: {available}. "
            "Run the nightly job (dbt build exports the feature store) for that date first."
        )
    df = spark.read.parquet(str(path))
    if "as_of_date" in df.columns:
        df = df.drop("as_of_date")
    return df.withColumn("as_of_date", F.lit(as_of_date).cast("date"))


def read_events(spark: SparkSession, path: Path, through_date: str) -> DataFrame:
    """The interaction events known by the end of `through_date`, typed as the recommender expects, keyed by person.

    The feature store is keyed by person (customer_id = the person's primary member; docs/identity.md) but the
    interactions are stored per customer id as they were known. When the export's person_keys/ (tonight's identity
    graph) is beside them, a merged guest checkout's or second account's events are re-keyed to the person's primary
    id, so the recommender learns and excludes what the person bought under any of its ids (retroactively: today's
    graph for every past event). Here (not in the training module) because scoring reads them too and must not import
    training code."""
    from pyspark.sql import functions as F

    from ml.recommender import check_events

    events = spark.read.parquet(str(path))
    check_events(events)
    if "known_date" in events.columns:  # the dbt export: only what had landed by the end of through_date
        events = events.where(F.col("known_date") <= F.lit(through_date).cast("date"))
    events = (events.select(F.col("customer_id").cast("string"), F.col("product_id").cast("string"),
                            F.col("event_type").cast("string"), F.col("event_time").cast("timestamp"))
              .where(F.col("event_time") < F.to_timestamp(F.date_add(F.lit(through_date).cast("date"), 1))))
    keys_path = Path(path).parent / "person_keys"
    if not any(keys_path.glob("*.parquet")):
        return events
    keys = spark.read.parquet(str(keys_path)).select(F.col("customer_id").cast("string"),
                                                      F.col("person_customer_id").cast("string"))
    return (events.join(F.broadcast(keys), "customer_id", "left")
            .select(F.coalesce("person_customer_id", "customer_id").alias("customer_id"),
                    "product_id", "event_type", "event_time"))


def customer_key(customer_id: str) -> str:
    """sha256 hex of the trimmed id: the key erasure matches (c360.privacy.erasure.customer_key computes the same, as
    DuckDB's sha256() does). Spelled out here so the training job does not import c360.privacy.erasure (a layer above)."""
    return hashlib.sha256(customer_id.strip().encode("utf-8")).hexdigest()
