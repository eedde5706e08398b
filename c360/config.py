"""All pipeline configuration, in one place: embedded defaults, each overridable by an environment variable.

Nothing else in the project reads os.environ for pipeline settings; it calls `get_settings()`.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent

# The Airflow pool every task that writes the DuckDB warehouse runs in (1 slot: DuckDB has a single writer).
WAREHOUSE_POOL = "warehouse"


class SettingsError(ValueError):
    """An environment variable holds a value the pipeline cannot use; the message names it and says what fits."""


def _env(name: str, default: str) -> str:
    value = os.environ.get(name)
    return default if value is None or value == "" else value


def _env_int(name: str, default: int) -> int:
    raw = _env(name, str(default))
    try:
        return int(raw)
    except ValueError as exc:
        raise SettingsError(f"Environment variable {name}={raw!r} must be a whole number") from exc


def _env_float(name: str, default: float) -> float:
    raw = _env(name, str(default))
    try:
        return float(raw)
    except ValueError as exc:
        raise SettingsError(f"Environment variable {name}={raw!r} must be a number") from exc


def _env_unless_unset(name: str, default: str) -> str:
    """The variable as set, even when empty (C360_TRAIN_ARGS="" means "no extra arguments"); default when unset."""
    value = os.environ.get(name)
    return default if value is None else value


def _env_list(name: str, default: tuple[str, ...]) -> tuple[str, ...]:
    """A comma-separated list; empty (or only commas) means the default."""
    return tuple(x.strip() for x in _env(name, "").split(",") if x.strip()) or default


def _env_date(name: str, default: str) -> str:
    from datetime import date

    raw = _env(name, default)
    try:
        return date.fromisoformat(raw).isoformat()
    except ValueError as exc:
        raise SettingsError(f"Environment variable {name}={raw!r} must be a date, YYYY-MM-DD") from exc


# Defaults shared with code that needs them without reading the environment (the DAG files, dbt_project.yml's
# env_var() defaults, which tests/test_config.py checks against these).
DEFAULT_TRAIN_SCHEDULE = "0 3 * * 0"  # weekly training, cron in UTC: Sundays 03:00
DEFAULT_LANDING_WAIT_SECONDS = 1800
DEFAULT_LANDING_POKE_SECONDS = 60
DEFAULT_LOOKBACK_DAYS = 3
DEFAULT_SESSION_TIMEOUT_MINUTES = 30
DEFAULT_MAX_CUSTOMERS_PER_DEVICE = 3
DEFAULT_IDENTITY_MAX_CUSTOMERS_PER_IDENTIFIER = 3
DEFAULT_IDENTITY_SPARK_STEPS = 12
# drift monitoring (c360/pipeline/monitoring.py): key features (recency, frequency, monetary value, engagement, tenure,
# returns and one categorical) and the scores whose PSI against the training snapshot is computed each night
DEFAULT_PSI_FEATURES = ("days_since_last_order", "orders_count", "net_revenue_eur", "avg_order_value_eur",
                        "orders_90d", "net_revenue_eur_90d", "sessions_30d", "tenure_days", "return_rate", "country")
DEFAULT_PSI_SCORES = ("churn_probability", "predicted_value_eur", "p_alive")
DEFAULT_PSI_WARN = 0.1
DEFAULT_PSI_HOLD = 0.25
# extra arguments of the weekly training and of the first-night training (no champion yet; skips the ALS grid so
# a fresh machine gets champions in minutes); see docs/models.md
DEFAULT_TRAIN_ARGS = "--train-snapshots 3"
DEFAULT_BOOTSTRAP_TRAIN_ARGS = "--rec-grid none --train-snapshots 3"
FIRST_CHAMPION_POLICIES = ("gated", "accept")
# next-best action (dbt_project/models/marts/actions/, docs/next_best_action.md): the rule thresholds, the assumed
# response uplift per action (expected value = uplift x value at stake) and the contact-frequency cap
DEFAULT_NBA_CONTACT_CAP_DAYS = 14
DEFAULT_NBA_RETAIN_MIN_CHURN = 0.5
DEFAULT_NBA_RETAIN_MIN_VALUE_EUR = 50.0
DEFAULT_NBA_WIN_BACK_AFTER_DAYS = 120
DEFAULT_NBA_CROSS_SELL_MAX_CHURN = 0.5
DEFAULT_NBA_NURTURE_MAX_ORDERS = 1
DEFAULT_NBA_MIN_EXPECTED_VALUE_EUR = 0.0
DEFAULT_NBA_UPLIFTS = {"retain": 0.1, "win_back": 0.05, "upsell": 0.08, "cross_sell": 0.05, "nurture": 0.02}


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
    dbt_target_path: str | None  # dbt's own DBT_TARGET_PATH (relative to the project); None: the project's target/
    s3_endpoint_url: str | None
    default_currency: str
    currencies: tuple[str, ...]
    future_tolerance_hours: float
    landing_wait_seconds: int
    landing_poke_seconds: int
    warehouse_lock_timeout_seconds: int
    # DuckDB's memory_limit for every warehouse connection (dbt's included): a size ("8GB") or a share of the
    # machine's memory ("35%"). Past it, DuckDB spills to <warehouse>.tmp/ instead of growing (docs/scale.md)
    warehouse_memory_limit: str = "35%"
    # which warehouse dbt builds in (docs/scale.md "Spark SQL"): duckdb (the file at warehouse_path) or spark (dbt-spark's
    # session method on spark_master; Parquet tables under spark_warehouse_dir, catalogued in an embedded Derby
    # metastore at spark_metastore_dir). It chooses dbt's default target: local or spark.
    warehouse: str = "duckdb"
    spark_warehouse_dir: Path = PROJECT_ROOT / "data" / "spark-warehouse"
    spark_metastore_dir: Path = PROJECT_ROOT / "data" / "spark-metastore"
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
    # how the dev generator (c360 generate, the demo of c360 nightly, c360 bench) lands the shop's tracking:
    # canonical (own format), a vendor's (snowplow, snowplow_json, segment, rudderstack, ga4) or a migration
    # OLD>NEW@YYYY-MM-DD[+overlap days] (docs/tracking_vendors.md#the-generator-in-a-vendors-format)
    generate_tracking_format: str = "canonical"
    # dbt vars read by dbt_project.yml's env_var()s with the same defaults; lookback_days is also how far back
    # c360.pipeline.transform re-exports label partitions (late orders may have changed them)
    lookback_days: int = DEFAULT_LOOKBACK_DAYS
    session_timeout_minutes: int = DEFAULT_SESSION_TIMEOUT_MINUTES
    max_customers_per_device: int = DEFAULT_MAX_CUSTOMERS_PER_DEVICE
    # identity graph (docs/identity.md): an email/cookie/device shared by more customers is not used to merge them
    identity_max_customers_per_identifier: int = DEFAULT_IDENTITY_MAX_CUSTOMERS_PER_IDENTIFIER
    # Spark warehouse only: the identity graph's components are found in this many relaxation steps (a component
    # wider than that many links fails the build, naming this setting; docs/scale.md)
    identity_spark_steps: int = DEFAULT_IDENTITY_SPARK_STEPS
    # drift monitoring: PSI >= psi_hold holds the exports, >= psi_warn warns; columns compared; the training
    # snapshot date to compare with (None: from the churn @champion's tags)
    psi_warn: float = DEFAULT_PSI_WARN
    psi_hold: float = DEFAULT_PSI_HOLD
    psi_features: tuple[str, ...] = DEFAULT_PSI_FEATURES
    psi_scores: tuple[str, ...] = DEFAULT_PSI_SCORES
    psi_reference_date: str | None = None
    # training: the weekly run's and the first night's extra job arguments (shell words), what the first night
    # does when a model's very first version fails its floors ("gated" stops, "accept" promotes it anyway), and
    # the weekly training's cron (UTC; read by dags/c360_train.py when Airflow parses it)
    train_args: str = DEFAULT_TRAIN_ARGS
    bootstrap_train_args: str = DEFAULT_BOOTSTRAP_TRAIN_ARGS
    first_champion: str = "gated"
    train_schedule: str = DEFAULT_TRAIN_SCHEDULE
    # destination sync (c360/marketing/activation, docs/destinations.md): the destinations file (absent = nothing is synced),
    # members per request, one request's timeout, the longest a batch may keep retrying (429/5xx/connection
    # errors) before the sync stops naming it, and the exponential backoff's first and largest wait
    destinations_file: Path = PROJECT_ROOT / "destinations.yml"
    sync_batch_size: int = 500
    sync_timeout_seconds: float = 30.0
    sync_max_retry_seconds: float = 300.0
    sync_backoff_base_seconds: float = 0.5
    sync_backoff_max_seconds: float = 30.0
    # the segments page (`c360 ui`, docs/ui.md): its port on 127.0.0.1 and how many nights its trend plots show
    ui_port: int = 8050
    ui_trend_nights: int = 14
    # next-best action rules, read by dbt (marts.customer_next_best_action) through the same variables: no action
    # for a customer more often than every nba_contact_cap_days; retain needs churn >= retain_min_churn and a
    # predicted value >= retain_min_value_eur; win-back after win_back_after_days without an order; upsell /
    # cross-sell need churn <= cross_sell_max_churn and a recommended product; nurture is for customers with at
    # most nurture_max_orders orders; the best action by expected value is chosen when it reaches
    # min_expected_value_eur. Uplifts: assumed extra response each action causes (0..1)
    nba_contact_cap_days: int = DEFAULT_NBA_CONTACT_CAP_DAYS
    nba_retain_min_churn: float = DEFAULT_NBA_RETAIN_MIN_CHURN
    nba_retain_min_value_eur: float = DEFAULT_NBA_RETAIN_MIN_VALUE_EUR
    nba_win_back_after_days: int = DEFAULT_NBA_WIN_BACK_AFTER_DAYS
    nba_cross_sell_max_churn: float = DEFAULT_NBA_CROSS_SELL_MAX_CHURN
    nba_nurture_max_orders: int = DEFAULT_NBA_NURTURE_MAX_ORDERS
    nba_min_expected_value_eur: float = DEFAULT_NBA_MIN_EXPECTED_VALUE_EUR
    nba_uplift_retain: float = DEFAULT_NBA_UPLIFTS["retain"]
    nba_uplift_win_back: float = DEFAULT_NBA_UPLIFTS["win_back"]
    nba_uplift_upsell: float = DEFAULT_NBA_UPLIFTS["upsell"]
    nba_uplift_cross_sell: float = DEFAULT_NBA_UPLIFTS["cross_sell"]
    nba_uplift_nurture: float = DEFAULT_NBA_UPLIFTS["nurture"]
    extra: dict = field(default_factory=dict)

    def as_env(self) -> dict[str, str]:
        """The settings as environment variables (ENV_VARS), for subprocesses (Airflow, dbt, Spark): a child's
        get_settings() resolves the same values. An unset optional setting (OPTIONAL) is left out, so the tool
        reading the variable keeps its own default (AWS's own endpoint, dbt's target/)."""
        return {ENV_VARS[key]: value for key, value in self.describe().items()
                if value or key not in OPTIONAL}

    @property
    def deployments_audit_path(self) -> Path:
        """The alias-move audit of ml.registry (DeploymentAudit): next to the MLflow store."""
        return self.data_dir / "mlflow" / "deployments.sqlite"

    def secret(self, name: str) -> Secret:
        """A destination's credential, read from the environment variable `name` now (docs/destinations.md).

        Not a field: a token must never reach `c360 config`, as_env() or a log line. Only variables named
        C360_DEST_* may be read, so a destinations file (untrusted input) cannot send, say, AWS_SECRET_ACCESS_KEY
        to a URL of its choosing."""
        return read_secret(name)

    def train_job_args(self) -> list[str]:
        return shlex.split(self.train_args)

    def bootstrap_train_job_args(self) -> list[str]:
        return shlex.split(self.bootstrap_train_args)

    def describe(self) -> dict[str, str]:
        """Every setting, for `c360 config`: field name -> value (lists comma-separated, None as empty)."""
        out = {}
        for key, value in asdict(self).items():
            if key == "extra":
                continue
            if isinstance(value, (tuple, list)):
                value = ",".join(map(str, value))
            out[key] = "" if value is None else str(value)
        return out


# Settings whose absence means "the tool's own default": as_env() leaves their variable out rather than set it empty
OPTIONAL = frozenset({"s3_endpoint_url", "dbt_target_path"})

# Each setting's environment variable (field -> variable): as_env() and `c360 config` use it; every field has one.
ENV_VARS: dict[str, str] = {
    "data_dir": "C360_DATA_DIR",
    "landing_uri": "LANDING_URI",
    "warehouse_path": "WAREHOUSE_PATH",
    "export_uri": "EXPORT_URI",
    "feature_store_dir": "C360_FEATURE_STORE_DIR",
    "scores_dir": "C360_SCORES_DIR",
    "reports_dir": "C360_REPORTS_DIR",
    "mlflow_tracking_uri": "MLFLOW_TRACKING_URI",
    "mlflow_artifact_root": "C360_MLFLOW_ARTIFACT_ROOT",
    "spark_master": "SPARK_MASTER",
    "airflow_home": "AIRFLOW_HOME",
    "dbt_project_dir": "DBT_PROJECT_DIR",
    "dbt_profiles_dir": "DBT_PROFILES_DIR",
    "dbt_target": "DBT_TARGET",
    "dbt_target_path": "DBT_TARGET_PATH",
    "s3_endpoint_url": "C360_S3_ENDPOINT_URL",
    "default_currency": "C360_DEFAULT_CURRENCY",
    "currencies": "C360_CURRENCIES",
    "future_tolerance_hours": "C360_FUTURE_TOLERANCE_HOURS",
    "landing_wait_seconds": "C360_LANDING_WAIT_SECONDS",
    "landing_poke_seconds": "C360_LANDING_POKE_SECONDS",
    "warehouse_lock_timeout_seconds": "C360_WAREHOUSE_LOCK_TIMEOUT_SECONDS",
    "warehouse_memory_limit": "C360_WAREHOUSE_MEMORY_LIMIT",
    "warehouse": "C360_WAREHOUSE",
    "spark_warehouse_dir": "C360_SPARK_WAREHOUSE_DIR",
    "spark_metastore_dir": "C360_SPARK_METASTORE_DIR",
    "churn_horizon_days": "C360_CHURN_HORIZON_DAYS",
    "value_horizon_days": "C360_VALUE_HORIZON_DAYS",
    "base_currency": "C360_BASE_CURRENCY",
    "earliest_date": "C360_EARLIEST_DATE",
    "max_quarantine_rate": "C360_MAX_QUARANTINE_RATE",
    "quarantine_rate_min_rows": "C360_QUARANTINE_RATE_MIN_ROWS",
    "s3_retry_mode": "C360_S3_RETRY_MODE",
    "s3_max_attempts": "C360_S3_MAX_ATTEMPTS",
    "s3_connect_timeout_seconds": "C360_S3_CONNECT_TIMEOUT_SECONDS",
    "volume_lookback_days": "C360_VOLUME_LOOKBACK_DAYS",
    "volume_min_ratio": "C360_VOLUME_MIN_RATIO",
    "volume_max_ratio": "C360_VOLUME_MAX_RATIO",
    "volume_min_history": "C360_VOLUME_MIN_HISTORY",
    "volume_min_rows": "C360_VOLUME_MIN_ROWS",
    "volume_override_date": "C360_VOLUME_OVERRIDE_DATE",
    "logs_dir": "C360_LOGS_DIR",
    "nightly_dag_timeout_seconds": "C360_NIGHTLY_DAG_TIMEOUT_SECONDS",
    "nightly_stop_grace_seconds": "C360_NIGHTLY_STOP_GRACE_SECONDS",
    "tracking_sources": "C360_TRACKING_SOURCES",
    "generate_tracking_format": "C360_GENERATE_TRACKING_FORMAT",
    "lookback_days": "C360_LOOKBACK_DAYS",
    "session_timeout_minutes": "C360_SESSION_TIMEOUT_MINUTES",
    "max_customers_per_device": "C360_MAX_CUSTOMERS_PER_DEVICE",
    "identity_max_customers_per_identifier": "C360_IDENTITY_MAX_CUSTOMERS_PER_IDENTIFIER",
    "identity_spark_steps": "C360_IDENTITY_SPARK_STEPS",
    "psi_warn": "C360_PSI_WARN",
    "psi_hold": "C360_PSI_HOLD",
    "psi_features": "C360_PSI_FEATURES",
    "psi_scores": "C360_PSI_SCORES",
    "psi_reference_date": "C360_PSI_REFERENCE_DATE",
    "train_args": "C360_TRAIN_ARGS",
    "bootstrap_train_args": "C360_BOOTSTRAP_TRAIN_ARGS",
    "first_champion": "C360_FIRST_CHAMPION",
    "train_schedule": "C360_TRAIN_SCHEDULE",
    "destinations_file": "C360_DESTINATIONS_FILE",
    "sync_batch_size": "C360_SYNC_BATCH_SIZE",
    "sync_timeout_seconds": "C360_SYNC_TIMEOUT_SECONDS",
    "sync_max_retry_seconds": "C360_SYNC_MAX_RETRY_SECONDS",
    "sync_backoff_base_seconds": "C360_SYNC_BACKOFF_BASE_SECONDS",
    "sync_backoff_max_seconds": "C360_SYNC_BACKOFF_MAX_SECONDS",
    "ui_port": "C360_UI_PORT",
    "ui_trend_nights": "C360_UI_TREND_NIGHTS",
    "nba_contact_cap_days": "C360_NBA_CONTACT_CAP_DAYS",
    "nba_retain_min_churn": "C360_NBA_RETAIN_MIN_CHURN",
    "nba_retain_min_value_eur": "C360_NBA_RETAIN_MIN_VALUE_EUR",
    "nba_win_back_after_days": "C360_NBA_WIN_BACK_AFTER_DAYS",
    "nba_cross_sell_max_churn": "C360_NBA_CROSS_SELL_MAX_CHURN",
    "nba_nurture_max_orders": "C360_NBA_NURTURE_MAX_ORDERS",
    "nba_min_expected_value_eur": "C360_NBA_MIN_EXPECTED_VALUE_EUR",
    "nba_uplift_retain": "C360_NBA_UPLIFT_RETAIN",
    "nba_uplift_win_back": "C360_NBA_UPLIFT_WIN_BACK",
    "nba_uplift_upsell": "C360_NBA_UPLIFT_UPSELL",
    "nba_uplift_cross_sell": "C360_NBA_UPLIFT_CROSS_SELL",
    "nba_uplift_nurture": "C360_NBA_UPLIFT_NURTURE",
}

# Environment variables a destination's credential may come from (Settings.secret).
SECRET_ENV_RE = r"^C360_DEST_[A-Z0-9_]{1,64}$"


class Secret:
    """A credential that does not print itself: repr/str show '***'; `reveal()` is the one way to the value."""

    __slots__ = ("_value", "name")

    def __init__(self, name: str, value: str):
        self.name, self._value = name, value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Secret({self.name}=***)"

    __str__ = __repr__


def read_secret(name: str) -> Secret:
    import re

    if not re.fullmatch(SECRET_ENV_RE, name or ""):
        raise SettingsError(f"{name!r} cannot hold a credential: only variables named C360_DEST_<NAME> "
                            "(upper case, digits, _) are read for destinations (docs/destinations.md)")
    value = os.environ.get(name, "")
    if not value.strip():
        raise SettingsError(f"Environment variable {name} is not set: it must hold the destination's token "
                            "(docs/destinations.md)")
    if any(c in value for c in "\r\n\0"):
        # a header value with a line break would let the token inject headers
        raise SettingsError(f"Environment variable {name} holds a line break or NUL; a token is one line")
    return Secret(name, value.strip())


def get_settings() -> Settings:
    """Read settings from the environment now (tests change the environment between calls)."""
    data_dir = Path(_env("C360_DATA_DIR", str(PROJECT_ROOT / "data"))).resolve()
    warehouse = _warehouse(_env("C360_WAREHOUSE", "duckdb"))
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
        dbt_target=_dbt_target(warehouse, _env("DBT_TARGET", "spark" if warehouse == "spark" else "local")),
        dbt_target_path=os.environ.get("DBT_TARGET_PATH") or None,
        s3_endpoint_url=os.environ.get("C360_S3_ENDPOINT_URL") or None,
        default_currency=_env("C360_DEFAULT_CURRENCY", _env("C360_BASE_CURRENCY", "EUR")).upper(),
        currencies=currencies,
        future_tolerance_hours=_env_float("C360_FUTURE_TOLERANCE_HOURS", 2.0),
        warehouse_lock_timeout_seconds=_env_int("C360_WAREHOUSE_LOCK_TIMEOUT_SECONDS", 0),
        warehouse_memory_limit=_memory_limit(_env("C360_WAREHOUSE_MEMORY_LIMIT", "35%")),
        warehouse=warehouse,
        spark_warehouse_dir=Path(_env("C360_SPARK_WAREHOUSE_DIR", str(data_dir / "spark-warehouse"))).resolve(),
        spark_metastore_dir=_metastore_dir(_env("C360_SPARK_METASTORE_DIR", str(data_dir / "spark-metastore"))),
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
        generate_tracking_format=_generate_tracking_format(_env("C360_GENERATE_TRACKING_FORMAT", "canonical")),
        lookback_days=_env_int_at_least("C360_LOOKBACK_DAYS", DEFAULT_LOOKBACK_DAYS, 0),
        session_timeout_minutes=_env_int_at_least("C360_SESSION_TIMEOUT_MINUTES", DEFAULT_SESSION_TIMEOUT_MINUTES, 1),
        max_customers_per_device=_env_int_at_least("C360_MAX_CUSTOMERS_PER_DEVICE",
                                                   DEFAULT_MAX_CUSTOMERS_PER_DEVICE, 1),
        identity_max_customers_per_identifier=_env_int_at_least(
            "C360_IDENTITY_MAX_CUSTOMERS_PER_IDENTIFIER", DEFAULT_IDENTITY_MAX_CUSTOMERS_PER_IDENTIFIER, 1),
        identity_spark_steps=_env_int_between("C360_IDENTITY_SPARK_STEPS", DEFAULT_IDENTITY_SPARK_STEPS, 1, 64),
        **_psi_settings(),
        train_args=_shell_words("C360_TRAIN_ARGS", DEFAULT_TRAIN_ARGS),
        bootstrap_train_args=_shell_words("C360_BOOTSTRAP_TRAIN_ARGS", DEFAULT_BOOTSTRAP_TRAIN_ARGS),
        first_champion=_first_champion(_env("C360_FIRST_CHAMPION", "gated")),
        ui_port=_env_int_at_least("C360_UI_PORT", 8050, 0),
        ui_trend_nights=_env_int_at_least("C360_UI_TREND_NIGHTS", 14, 2),
        **_parse_time_values(),
        destinations_file=Path(_env("C360_DESTINATIONS_FILE", str(PROJECT_ROOT / "destinations.yml"))).resolve(),
        sync_batch_size=_env_int_between("C360_SYNC_BATCH_SIZE", 500, 1, 10_000),
        sync_timeout_seconds=_env_float_at_least("C360_SYNC_TIMEOUT_SECONDS", 30.0, 0.1),
        sync_max_retry_seconds=_env_float_at_least("C360_SYNC_MAX_RETRY_SECONDS", 300.0, 0.0),
        sync_backoff_base_seconds=_env_float_at_least("C360_SYNC_BACKOFF_BASE_SECONDS", 0.5, 0.0),
        sync_backoff_max_seconds=_env_float_at_least("C360_SYNC_BACKOFF_MAX_SECONDS", 30.0, 0.0),
        **_nba_settings(),
    )


def _parse_time_values() -> dict:
    """The settings Airflow needs when it parses the DAG files (a schedule, a sensor's poke interval and timeout).

    Read alone by `dag_parse_settings()`, so that a DAG file does not read (and validate) every setting at import:
    a typo in an unrelated variable then fails the task that uses it, not the import of every DAG."""
    return {
        "landing_wait_seconds": _env_int("C360_LANDING_WAIT_SECONDS", DEFAULT_LANDING_WAIT_SECONDS),
        "landing_poke_seconds": _env_int("C360_LANDING_POKE_SECONDS", DEFAULT_LANDING_POKE_SECONDS),
        "train_schedule": _cron("C360_TRAIN_SCHEDULE", _env("C360_TRAIN_SCHEDULE", DEFAULT_TRAIN_SCHEDULE)),
    }


@dataclass(frozen=True)
class DagParseSettings:
    """What a DAG file may read when Airflow parses it: Airflow needs these on the DAG/operator objects."""

    landing_wait_seconds: int
    landing_poke_seconds: int
    train_schedule: str


def dag_parse_settings() -> DagParseSettings:
    """The parse-time subset of Settings (same variables, defaults and checks as get_settings())."""
    return DagParseSettings(**_parse_time_values())


def _env_int_at_least(name: str, default: int, low: int) -> int:
    value = _env_int(name, default)
    if value < low:
        raise SettingsError(f"Environment variable {name}={value} must be at least {low}")
    return value


def _env_int_between(name: str, default: int, low: int, high: int) -> int:
    value = _env_int_at_least(name, default, low)
    if value > high:
        raise SettingsError(f"Environment variable {name}={value} must be at most {high}")
    return value


def _env_float_at_least(name: str, default: float, low: float) -> float:
    value = _env_float(name, default)
    if not value >= low:  # also refuses nan
        raise SettingsError(f"Environment variable {name}={value} must be at least {low}")
    return value


def _psi_settings() -> dict:
    warn = _env_float("C360_PSI_WARN", DEFAULT_PSI_WARN) if _env("C360_PSI_WARN", "").strip() else DEFAULT_PSI_WARN
    hold = _env_float("C360_PSI_HOLD", DEFAULT_PSI_HOLD) if _env("C360_PSI_HOLD", "").strip() else DEFAULT_PSI_HOLD
    if not 0 <= warn <= hold:
        raise SettingsError(f"C360_PSI_WARN={warn} and C360_PSI_HOLD={hold}: need 0 <= warn <= hold")
    reference = _env("C360_PSI_REFERENCE_DATE", "").strip()
    return {
        "psi_warn": warn,
        "psi_hold": hold,
        "psi_features": _env_list("C360_PSI_FEATURES", DEFAULT_PSI_FEATURES),
        "psi_scores": _env_list("C360_PSI_SCORES", DEFAULT_PSI_SCORES),
        "psi_reference_date": _env_date("C360_PSI_REFERENCE_DATE", reference) if reference else None,
    }


def _env_float_between(name: str, default: float, low: float, high: float | None = None) -> float:
    value = _env_float(name, default)
    if value < low or (high is not None and value > high):
        bounds = f"between {low:g} and {high:g}" if high is not None else f"at least {low:g}"
        raise SettingsError(f"Environment variable {name}={value:g} must be {bounds} (docs/next_best_action.md)")
    return value


def _nba_settings() -> dict:
    """The next-best-action rules, checked here so a typo fails at start-up, not in the middle of dbt."""
    return {
        "nba_contact_cap_days": _env_int_at_least("C360_NBA_CONTACT_CAP_DAYS", DEFAULT_NBA_CONTACT_CAP_DAYS, 0),
        "nba_retain_min_churn": _env_float_between("C360_NBA_RETAIN_MIN_CHURN", DEFAULT_NBA_RETAIN_MIN_CHURN, 0, 1),
        "nba_retain_min_value_eur": _env_float_between("C360_NBA_RETAIN_MIN_VALUE_EUR",
                                                       DEFAULT_NBA_RETAIN_MIN_VALUE_EUR, 0),
        "nba_win_back_after_days": _env_int_at_least("C360_NBA_WIN_BACK_AFTER_DAYS", DEFAULT_NBA_WIN_BACK_AFTER_DAYS, 1),
        "nba_cross_sell_max_churn": _env_float_between("C360_NBA_CROSS_SELL_MAX_CHURN",
                                                       DEFAULT_NBA_CROSS_SELL_MAX_CHURN, 0, 1),
        "nba_nurture_max_orders": _env_int_at_least("C360_NBA_NURTURE_MAX_ORDERS", DEFAULT_NBA_NURTURE_MAX_ORDERS, 0),
        "nba_min_expected_value_eur": _env_float_between("C360_NBA_MIN_EXPECTED_VALUE_EUR",
                                                         DEFAULT_NBA_MIN_EXPECTED_VALUE_EUR, 0),
        **{f"nba_uplift_{action}": _env_float_between(f"C360_NBA_UPLIFT_{action.upper()}", default, 0, 1)
           for action, default in DEFAULT_NBA_UPLIFTS.items()},
    }


def _shell_words(name: str, default: str) -> str:
    raw = _env_unless_unset(name, default)
    try:
        shlex.split(raw)
    except ValueError as exc:
        raise SettingsError(f"Environment variable {name}={raw!r} is not valid shell words ({exc}); "
                         f"e.g. {default!r}") from exc
    return raw


def _first_champion(value: str) -> str:
    policy = value.strip().lower()
    if policy not in FIRST_CHAMPION_POLICIES:
        raise SettingsError(f"Environment variable C360_FIRST_CHAMPION={value!r} must be "
                         f"{' or '.join(FIRST_CHAMPION_POLICIES)} (docs/models.md)")
    return policy


def _cron(name: str, value: str) -> str:
    """Five cron fields (minute hour day month weekday), as Airflow's CronTriggerTimetable takes them."""
    expr = value.strip()
    if len(expr.split()) != 5 and not expr.startswith("@"):
        raise SettingsError(f"Environment variable {name}={value!r} must be a cron expression with five fields "
                         "(minute hour day-of-month month day-of-week, UTC), e.g. '0 3 * * 0'")
    return expr


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
            raise SettingsError(
                f"C360_TRACKING_SOURCES: {item!r} is not <source>:<from>..<until> with a source among "
                f"{', '.join(sources)} and YYYY-MM-DD dates (either may be empty), e.g. "
                "'segment:..2026-03-15,snowplow:2026-03-15..'. See docs/tracking_vendors.md."
            ) from None
    return value.strip()


def _generate_tracking_format(value: str) -> str:
    """C360_GENERATE_TRACKING_FORMAT's shape checked at start-up (the generator, dev-only, checks the rest)."""
    import re

    from c360.ingest.contract import TRACKING_VENDORS  # no c360 imports there: no cycle

    value = value.strip().lower() or "canonical"
    names = ("canonical", *TRACKING_VENDORS, "snowplow_json")
    m = re.fullmatch(r"([a-z_0-9]+)(?:>([a-z_0-9]+)@(\d{4}-\d{2}-\d{2})(?:\+\d+)?)?", value)
    if not m or any(n is not None and n not in names for n in m.group(1, 2)):
        raise SettingsError(
            f"Environment variable C360_GENERATE_TRACKING_FORMAT={value!r} must be one of {', '.join(names)} or a "
            "migration OLD>NEW@YYYY-MM-DD[+OVERLAP_DAYS], e.g. 'segment>snowplow@2026-03-15'. "
            "See docs/tracking_vendors.md.")
    return value


_MEMORY_LIMIT = re.compile(r"(?:(\d+(?:\.\d+)?)\s*%|\d+(?:\.\d+)?\s*(?:[KMGT]i?B|B))", re.IGNORECASE)


WAREHOUSES = ("duckdb", "spark")
# the profiles.yml targets of each warehouse (dbt_project/profiles.yml)
_DUCKDB_TARGETS = ("local", "ci")


def _warehouse(value: str) -> str:
    name = value.strip().lower()
    if name not in WAREHOUSES:
        raise SettingsError(f"C360_WAREHOUSE={value!r}: expected one of {', '.join(WAREHOUSES)} (default duckdb; "
                            "docs/scale.md)")
    return name


def _metastore_dir(value: str) -> Path:
    """C360_SPARK_METASTORE_DIR goes into a JDBC URL (jdbc:derby:;databaseName=...;create=true), where ';' starts
    another connection attribute."""
    if any(c in value for c in ";\r\n\0"):
        raise SettingsError(f"C360_SPARK_METASTORE_DIR={value!r}: a folder path without ';' or line breaks")
    return Path(value).resolve()


def _dbt_target(warehouse: str, target: str) -> str:
    """DBT_TARGET, checked against C360_WAREHOUSE: a DuckDB target with the Spark warehouse would build the
    other warehouse than the one every reader then opens."""
    if warehouse == "spark" and target in _DUCKDB_TARGETS:
        raise SettingsError(f"C360_WAREHOUSE=spark but DBT_TARGET={target!r} is a DuckDB target of "
                            "dbt_project/profiles.yml: unset DBT_TARGET or set it to spark")
    if warehouse == "duckdb" and target == "spark":
        raise SettingsError("DBT_TARGET=spark builds the Spark warehouse: set C360_WAREHOUSE=spark as well")
    return target


def _memory_limit(value: str) -> str:
    """C360_WAREHOUSE_MEMORY_LIMIT: a size DuckDB reads ("12GB", "800MiB") or a share of the machine ("35%", 1-100).
    Checked here because the value reaches a SET statement and dbt's profile."""
    value = value.strip()
    match = _MEMORY_LIMIT.fullmatch(value)
    if not match or (match.group(1) is not None and not 1 <= float(match.group(1)) <= 100):
        raise SettingsError(f"C360_WAREHOUSE_MEMORY_LIMIT={value!r}: expected a size such as 8GB or 800MiB, or a "
                            "share of the machine's memory from 1% to 100% (default 35%)")
    return value


def _s3_retry_mode(value: str) -> str:
    mode = value.strip().lower()
    if mode not in ("standard", "adaptive", "legacy"):
        raise SettingsError(f"Environment variable C360_S3_RETRY_MODE={value!r} must be standard, adaptive or legacy "
                         "(botocore's retry modes)")
    return mode


@contextlib.contextmanager
def process_environment(values: dict[str, str]) -> Iterator[None]:
    """Set environment variables for an in-process call that reads them itself (dbt's `env_var`), and restore
    the previous values afterwards. The one place outside get_settings() that touches os.environ."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old
