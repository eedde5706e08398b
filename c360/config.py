"""All pipeline configuration, in one place: embedded defaults, each overridable by an environment variable.

Nothing else in the project reads os.environ for pipeline settings; it calls `get_settings()`.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent

# The Airflow pool every task that writes the DuckDB warehouse runs in (1 slot: DuckDB has a single writer).
WAREHOUSE_POOL = "warehouse"


def _env(name: str, default: str) -> str:
    value = os.environ.get(name)
    return default if value is None or value == "" else value


def _env_int(name: str, default: int) -> int:
    raw = _env(name, str(default))
    try:
        return int(raw)
    except ValueError as exc:
        raise ValueError(f"Environment variable {name}={raw!r} must be a whole number") from exc


def _env_float(name: str, default: float) -> float:
    raw = _env(name, str(default))
    try:
        return float(raw)
    except ValueError as exc:
        raise ValueError(f"Environment variable {name}={raw!r} must be a number") from exc


def _env_date(name: str, default: str) -> str:
    from datetime import date

    raw = _env(name, default)
    try:
        return date.fromisoformat(raw).isoformat()
    except ValueError as exc:
        raise ValueError(f"Environment variable {name}={raw!r} must be a date, YYYY-MM-DD") from exc


@dataclass(frozen=True)
class Settings:
    """Resolved settings. Paths are absolute; URIs are local paths or s3://bucket/prefix."""

    data_dir: Path
    landing_uri: str
    warehouse_path: Path
    export_uri: str
    feature_store_dir: Path
    scores_dir: Path
    reports_dir: Path
    mlflow_tracking_uri: str
    mlflow_artifact_root: str
    spark_master: str
    airflow_home: Path
    dbt_project_dir: Path
    dbt_profiles_dir: Path
    dbt_target: str
    s3_endpoint_url: str | None
    default_currency: str
    currencies: tuple[str, ...]
    future_tolerance_hours: float
    landing_wait_seconds: int
    landing_poke_seconds: int
    warehouse_lock_timeout_seconds: int
    churn_horizon_days: int = 90
    value_horizon_days: int = 180
    # ingestion fails an entity when more than this share of a date's rows is quarantined (expected reasons such
    # as duplicates and test orders excluded), for dates with at least quarantine_rate_min_rows landed rows
    # the shop's reporting currency: amounts in it need no rate; the warehouse's *_eur columns hold amounts in it
    base_currency: str = "EUR"
    # rows dated before this (ordered_at, returned_at...) are quarantined (date_out_of_range)
    earliest_date: str = "1970-01-01"
    max_quarantine_rate: float = 0.05
    quarantine_rate_min_rows: int = 100
    # S3 calls: botocore's retry mode (standard | adaptive | legacy), attempts including the first, and the
    # connect timeout; an unreachable endpoint fails after max_attempts with one line naming it.
    s3_retry_mode: str = "standard"
    s3_max_attempts: int = 5
    s3_connect_timeout_seconds: float = 10.0
    # volume check (c360/ingest/volume.py): a date's landed rows per entity against the median of the previous
    # volume_lookback_days nights; outside [min_ratio, max_ratio] x median, scoring and exports are held
    volume_lookback_days: int = 14
    volume_min_ratio: float = 0.2
    volume_max_ratio: float = 5.0
    volume_min_history: int = 7  # fewer prior nights: "not enough history", never held
    volume_min_rows: int = 100  # a median below this is too small to judge (small counts swing by chance)
    volume_override_date: str | None = None  # YYYY-MM-DD: that night is not held for volume (one run's override)
    # `c360 nightly`: where each DAG run's full Airflow/dbt/Spark log goes (<logs_dir>/nightly/<D>/<dag>.log),
    # the longest one DAG run may take before it is stopped, and how long a stopped run gets to end cleanly
    # (SIGTERM to its process group) before it is killed
    logs_dir: Path = PROJECT_ROOT / "data" / "logs"
    nightly_dag_timeout_seconds: int = 6 * 3600
    nightly_stop_grace_seconds: int = 20
    # which tracking source counts on which days, for a migration between vendors: "segment:..2026-03-15,
    # snowplow:2026-03-15.." (vendor:from..until, UTC dates, until excluded, either end open; own format = c360).
    # Empty: every source always. Read by dbt's staging (docs/tracking_vendors.md#migrating-between-vendors).
    tracking_sources: str = ""
    extra: dict = field(default_factory=dict)

    def as_env(self) -> dict[str, str]:
        """The settings as environment variables, for subprocesses (Airflow, dbt, Spark)."""
        env = {
            "C360_DATA_DIR": str(self.data_dir),
            "LANDING_URI": self.landing_uri,
            "WAREHOUSE_PATH": str(self.warehouse_path),
            "EXPORT_URI": self.export_uri,
            "C360_FEATURE_STORE_DIR": str(self.feature_store_dir),
            "C360_SCORES_DIR": str(self.scores_dir),
            "C360_REPORTS_DIR": str(self.reports_dir),
            "MLFLOW_TRACKING_URI": self.mlflow_tracking_uri,
            "C360_MLFLOW_ARTIFACT_ROOT": self.mlflow_artifact_root,
            "SPARK_MASTER": self.spark_master,
            "AIRFLOW_HOME": str(self.airflow_home),
            "DBT_PROJECT_DIR": str(self.dbt_project_dir),
            "DBT_PROFILES_DIR": str(self.dbt_profiles_dir),
            "DBT_TARGET": self.dbt_target,
            "C360_DEFAULT_CURRENCY": self.default_currency,
            "C360_CURRENCIES": ",".join(self.currencies),
            "C360_FUTURE_TOLERANCE_HOURS": str(self.future_tolerance_hours),
            "C360_LANDING_WAIT_SECONDS": str(self.landing_wait_seconds),
            "C360_LANDING_POKE_SECONDS": str(self.landing_poke_seconds),
            "C360_WAREHOUSE_LOCK_TIMEOUT_SECONDS": str(self.warehouse_lock_timeout_seconds),
            "C360_CHURN_HORIZON_DAYS": str(self.churn_horizon_days),
            "C360_VALUE_HORIZON_DAYS": str(self.value_horizon_days),
            "C360_BASE_CURRENCY": self.base_currency,
            "C360_EARLIEST_DATE": self.earliest_date,
            "C360_MAX_QUARANTINE_RATE": str(self.max_quarantine_rate),
            "C360_QUARANTINE_RATE_MIN_ROWS": str(self.quarantine_rate_min_rows),
            "C360_S3_RETRY_MODE": self.s3_retry_mode,
            "C360_S3_MAX_ATTEMPTS": str(self.s3_max_attempts),
            "C360_S3_CONNECT_TIMEOUT_SECONDS": str(self.s3_connect_timeout_seconds),
            "C360_VOLUME_LOOKBACK_DAYS": str(self.volume_lookback_days),
            "C360_VOLUME_MIN_RATIO": str(self.volume_min_ratio),
            "C360_VOLUME_MAX_RATIO": str(self.volume_max_ratio),
            "C360_VOLUME_MIN_HISTORY": str(self.volume_min_history),
            "C360_VOLUME_MIN_ROWS": str(self.volume_min_rows),
            "C360_VOLUME_OVERRIDE_DATE": self.volume_override_date or "",
            "C360_LOGS_DIR": str(self.logs_dir),
            "C360_NIGHTLY_DAG_TIMEOUT_SECONDS": str(self.nightly_dag_timeout_seconds),
            "C360_NIGHTLY_STOP_GRACE_SECONDS": str(self.nightly_stop_grace_seconds),
            "C360_TRACKING_SOURCES": self.tracking_sources,
        }
        if self.s3_endpoint_url:
            env["C360_S3_ENDPOINT_URL"] = self.s3_endpoint_url
        return env

    def describe(self) -> dict[str, str]:
        return {k: str(v) for k, v in asdict(self).items() if k != "extra"}


def get_settings() -> Settings:
    """Read settings from the environment now (tests change the environment between calls)."""
    data_dir = Path(_env("C360_DATA_DIR", str(PROJECT_ROOT / "data"))).resolve()
    currencies = tuple(
        c.strip().upper() for c in _env("C360_CURRENCIES", "EUR,USD,GBP,SEK,DKK,NOK,PLN,CHF").split(",") if c.strip()
    )
    return Settings(
        data_dir=data_dir,
        landing_uri=_env("LANDING_URI", str(data_dir / "landing")),
        warehouse_path=Path(_env("WAREHOUSE_PATH", str(data_dir / "warehouse" / "c360.duckdb"))).resolve(),
        export_uri=_env("EXPORT_URI", str(data_dir / "exports")),
        feature_store_dir=Path(_env("C360_FEATURE_STORE_DIR", str(data_dir / "feature_store"))).resolve(),
        scores_dir=Path(_env("C360_SCORES_DIR", str(data_dir / "scores"))).resolve(),
        reports_dir=Path(_env("C360_REPORTS_DIR", str(data_dir / "reports"))).resolve(),
        mlflow_tracking_uri=_env("MLFLOW_TRACKING_URI", f"sqlite:///{data_dir / 'mlflow' / 'mlflow.db'}"),
        mlflow_artifact_root=_env("C360_MLFLOW_ARTIFACT_ROOT", str(data_dir / "mlflow" / "artifacts")),
        spark_master=_env("SPARK_MASTER", "local[*]"),
        airflow_home=Path(_env("AIRFLOW_HOME", str(PROJECT_ROOT / ".airflow"))).resolve(),
        dbt_project_dir=Path(_env("DBT_PROJECT_DIR", str(PROJECT_ROOT / "dbt_project"))).resolve(),
        dbt_profiles_dir=Path(_env("DBT_PROFILES_DIR", str(PROJECT_ROOT / "dbt_project"))).resolve(),
        dbt_target=_env("DBT_TARGET", "local"),
        s3_endpoint_url=os.environ.get("C360_S3_ENDPOINT_URL") or None,
        default_currency=_env("C360_DEFAULT_CURRENCY", _env("C360_BASE_CURRENCY", "EUR")).upper(),
        currencies=currencies,
        future_tolerance_hours=_env_float("C360_FUTURE_TOLERANCE_HOURS", 2.0),
        landing_wait_seconds=_env_int("C360_LANDING_WAIT_SECONDS", 1800),
        landing_poke_seconds=_env_int("C360_LANDING_POKE_SECONDS", 60),
        warehouse_lock_timeout_seconds=_env_int("C360_WAREHOUSE_LOCK_TIMEOUT_SECONDS", 0),
        # label horizons: read by dbt (the same variables) and passed to the training job
        churn_horizon_days=_env_int("C360_CHURN_HORIZON_DAYS", 90),
        value_horizon_days=_env_int("C360_VALUE_HORIZON_DAYS", 180),
        base_currency=_env("C360_BASE_CURRENCY", "EUR").strip().upper(),
        earliest_date=_env_date("C360_EARLIEST_DATE", "1970-01-01"),
        max_quarantine_rate=_env_float("C360_MAX_QUARANTINE_RATE", 0.05),
        quarantine_rate_min_rows=_env_int("C360_QUARANTINE_RATE_MIN_ROWS", 100),
        s3_retry_mode=_s3_retry_mode(_env("C360_S3_RETRY_MODE", "standard")),
        s3_max_attempts=max(1, _env_int("C360_S3_MAX_ATTEMPTS", 5)),
        s3_connect_timeout_seconds=_env_float("C360_S3_CONNECT_TIMEOUT_SECONDS", 10.0),
        volume_lookback_days=_env_int("C360_VOLUME_LOOKBACK_DAYS", 14),
        volume_min_ratio=_env_float("C360_VOLUME_MIN_RATIO", 0.2),
        volume_max_ratio=_env_float("C360_VOLUME_MAX_RATIO", 5.0),
        volume_min_history=_env_int("C360_VOLUME_MIN_HISTORY", 7),
        volume_min_rows=_env_int("C360_VOLUME_MIN_ROWS", 100),
        volume_override_date=_env_date("C360_VOLUME_OVERRIDE_DATE", "") if _env("C360_VOLUME_OVERRIDE_DATE", "") else None,
        logs_dir=Path(_env("C360_LOGS_DIR", str(data_dir / "logs"))).resolve(),
        nightly_dag_timeout_seconds=_env_int("C360_NIGHTLY_DAG_TIMEOUT_SECONDS", 6 * 3600),
        nightly_stop_grace_seconds=_env_int("C360_NIGHTLY_STOP_GRACE_SECONDS", 20),
        tracking_sources=_tracking_sources(_env("C360_TRACKING_SOURCES", "")),
    )


def _tracking_sources(value: str) -> str:
    """C360_TRACKING_SOURCES checked here, so a typo fails at start-up naming the item, not in the middle of dbt."""
    from datetime import date

    from c360.ingest.contract import TRACKING_VENDORS  # no c360 imports there: no cycle

    sources = ("c360", *TRACKING_VENDORS)
    for item in (i.strip() for i in value.split(",")):
        if not item:
            continue
        vendor, _, window = item.partition(":")
        lo, sep, hi = window.partition("..")
        try:
            if vendor.strip().lower() not in sources or not sep:
                raise ValueError
            for d in (lo.strip(), hi.strip()):
                if d:
                    date.fromisoformat(d)
        except ValueError:
            raise ValueError(
                f"C360_TRACKING_SOURCES: {item!r} is not <source>:<from>..<until> with a source among "
                f"{', '.join(sources)} and YYYY-MM-DD dates (either may be empty), e.g. "
                "'segment:..2026-03-15,snowplow:2026-03-15..'. See docs/tracking_vendors.md."
            ) from None
    return value.strip()


def _s3_retry_mode(value: str) -> str:
    mode = value.strip().lower()
    if mode not in ("standard", "adaptive", "legacy"):
        raise ValueError(f"Environment variable C360_S3_RETRY_MODE={value!r} must be standard, adaptive or legacy "
                         "(botocore's retry modes)")
    return mode
