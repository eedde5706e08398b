"""Drift monitoring: population stability index (PSI) of key features and of the scores against a reference
(training) snapshot, recorded nightly in `monitoring.psi`, and the rule that holds exports back.

PSI binning (the same for every numeric column):
  * bins come from the REFERENCE distribution only: its deciles (quantiles 0.1 .. 0.9, numpy's "lower"
    method, so every edge is an observed value), duplicates removed, so a column with heavy ties (counts,
    days) gets fewer bins rather than empty ones; bins are right-closed,
    (-inf, q1], (q1, q2], ..., (q9, +inf), and the current data is counted in the same bins;
  * nulls/NaN form one extra "missing" bin, so a change in the missing rate counts as drift;
  * text and boolean columns use one bin per value (the union of both sides' values);
  * proportions are per side (count / rows); an empty bin's proportion is raised to EPSILON = 1e-4 so the
    logarithm stays finite (no renormalisation: the effect is at most ~1e-3 on the sum);
  * PSI = sum over bins of (current - reference) * ln(current / reference).
Thresholds: status `hold` when PSI >= C360_PSI_HOLD (default 0.25), `warn` when PSI >= C360_PSI_WARN
(default 0.1), else `ok`. The usual reading: < 0.1 stable, 0.1-0.25 moderate shift, > 0.25 major shift.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from c360.config import (
    DEFAULT_PSI_FEATURES,
    DEFAULT_PSI_HOLD,
    DEFAULT_PSI_SCORES,
    DEFAULT_PSI_WARN,
    Settings,
    get_settings,
)

log = logging.getLogger(__name__)

EPSILON = 1e-4
DECILES = tuple(i / 10 for i in range(1, 10))
# the defaults live with the settings (c360/config.py); these names stay for existing imports
DEFAULT_WARN = DEFAULT_PSI_WARN
DEFAULT_HOLD = DEFAULT_PSI_HOLD
DEFAULT_FEATURES = DEFAULT_PSI_FEATURES
DEFAULT_SCORES = DEFAULT_PSI_SCORES
# Where the reference date comes from when not given: this tag on the churn @champion model version.
REFERENCE_TAG = "training_as_of_date"

PSI_TABLE = "monitoring.psi"
_DDL = f"""
CREATE SCHEMA IF NOT EXISTS monitoring;
CREATE TABLE IF NOT EXISTS {PSI_TABLE} (
    as_of_date DATE NOT NULL,        -- the night's date (current distribution)
    reference_date DATE NOT NULL,    -- the training snapshot it is compared with
    kind VARCHAR NOT NULL,           -- 'feature' | 'score'
    name VARCHAR NOT NULL,           -- column name
    psi DOUBLE NOT NULL,
    status VARCHAR NOT NULL,         -- 'ok' | 'warn' | 'hold'
    bins INTEGER,                    -- bins used (incl. the missing bin)
    reference_rows BIGINT,
    current_rows BIGINT,
    computed_at TIMESTAMPTZ
)"""


# --------------------------------------------------------------------------------------------- settings


def psi_thresholds(settings: Settings | None = None) -> tuple[float, float]:
    """(warn, hold): Settings.psi_warn / psi_hold (C360_PSI_WARN, default 0.1; C360_PSI_HOLD, default 0.25)."""
    settings = settings or get_settings()
    return settings.psi_warn, settings.psi_hold


def monitored_features(settings: Settings | None = None) -> tuple[str, ...]:
    """Feature columns to monitor: Settings.psi_features (C360_PSI_FEATURES, comma-separated)."""
    return (settings or get_settings()).psi_features


def monitored_scores(settings: Settings | None = None) -> tuple[str, ...]:
    """Score columns to monitor: Settings.psi_scores (C360_PSI_SCORES, comma-separated)."""
    return (settings or get_settings()).psi_scores


def psi_status(value: float, warn: float | None = None, hold: float | None = None) -> str:
    if warn is None or hold is None:
        warn, hold = psi_thresholds()
    return "hold" if value >= hold else "warn" if value >= warn else "ok"


# ------------------------------------------------------------------------------------------------- math


def _is_categorical(values) -> bool:
    import numpy as np

    arr = np.asarray(values)
    return arr.dtype.kind in "OUSb"


def _proportions(counts, total: int):
    import numpy as np

    p = np.asarray(counts, dtype=float) / max(total, 1)
    return np.where(p <= 0, EPSILON, p)


def psi_numeric(reference, current) -> tuple[float, int]:
    """PSI of two numeric samples with reference-decile bins (see the module docstring). Returns (psi, bins)."""
    import numpy as np

    ref = np.asarray(reference, dtype=float)
    cur = np.asarray(current, dtype=float)
    if ref.size == 0 or cur.size == 0:
        raise ValueError("PSI needs rows on both sides")
    ref_ok, cur_ok = ref[~np.isnan(ref)], cur[~np.isnan(cur)]
    edges = np.unique(np.quantile(ref_ok, DECILES, method="lower")) if ref_ok.size else np.array([])
    n_bins = edges.size + 1
    # searchsorted(side="left") puts x in bin i with edges[i-1] < x <= edges[i]: right-closed bins.
    ref_counts = np.bincount(np.searchsorted(edges, ref_ok, side="left"), minlength=n_bins)
    cur_counts = np.bincount(np.searchsorted(edges, cur_ok, side="left"), minlength=n_bins)
    ref_missing, cur_missing = ref.size - ref_ok.size, cur.size - cur_ok.size
    if ref_missing or cur_missing:
        ref_counts = np.append(ref_counts, ref_missing)
        cur_counts = np.append(cur_counts, cur_missing)
    return _psi_from_counts(ref_counts, ref.size, cur_counts, cur.size), int(ref_counts.size)


def psi_categorical(reference, current) -> tuple[float, int]:
    """PSI with one bin per distinct value (None is a value: 'missing'). Returns (psi, bins)."""
    from collections import Counter

    ref = ["\0missing" if v is None else str(v) for v in reference]
    cur = ["\0missing" if v is None else str(v) for v in current]
    if not ref or not cur:
        raise ValueError("PSI needs rows on both sides")
    rc, cc = Counter(ref), Counter(cur)
    cats = sorted(set(rc) | set(cc))
    return _psi_from_counts([rc[c] for c in cats], len(ref), [cc[c] for c in cats], len(cur)), len(cats)


def _psi_from_counts(ref_counts, ref_total: int, cur_counts, cur_total: int) -> float:
    import numpy as np

    e, a = _proportions(ref_counts, ref_total), _proportions(cur_counts, cur_total)
    return float(np.sum((a - e) * np.log(a / e)))


def population_stability_index(reference, current) -> float:
    """PSI of `current` against `reference` (numeric -> decile bins, text/bool -> one bin per value)."""
    fn = psi_categorical if _is_categorical(reference) or _is_categorical(current) else psi_numeric
    return fn(reference, current)[0]


# ------------------------------------------------------------------------------------------ data access


def _partition_dir(root: Path, key: str, day: date) -> Path:
    return root / f"{key}={day.isoformat()}"


def _read_columns(folder: Path, wanted: tuple[str, ...]) -> tuple[dict[str, list], dict[str, str]]:
    """{column: python values} for the wanted columns that exist and are monitorable, and {column: why skipped}."""
    import pyarrow as pa
    import pyarrow.dataset as ds

    dataset = ds.dataset(str(folder), format="parquet")
    names = set(dataset.schema.names)
    present = [c for c in wanted if c in names]
    skipped = {c: f"no column {c} in {folder}" for c in wanted if c not in names}
    if not present:
        return {}, skipped
    table = dataset.to_table(columns=present)
    out: dict[str, list] = {}
    for col in present:
        arr = table.column(col)
        t = arr.type
        if pa.types.is_decimal(t) or pa.types.is_integer(t) or pa.types.is_floating(t):
            # Decimals (money) come back as Python Decimals; floats keep numpy fast and nulls become NaN.
            out[col] = arr.cast(pa.float64()).to_numpy(zero_copy_only=False)
        elif pa.types.is_boolean(t) or pa.types.is_string(t) or pa.types.is_large_string(t) \
                or pa.types.is_dictionary(t):
            out[col] = [None if v is None else str(v) for v in arr.to_pylist()]
        else:
            skipped[col] = f"type {t} is not monitored (numbers, text and booleans are)"
    return out, skipped


@dataclass
class PsiRow:
    as_of_date: date
    reference_date: date
    kind: str
    name: str
    psi: float
    status: str
    bins: int
    reference_rows: int
    current_rows: int


@dataclass
class MonitoringResult:
    as_of_date: date
    reference_date: date | None
    rows: list[PsiRow] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what could not be computed, and why

    def as_dict(self) -> dict[str, Any]:
        return {"as_of_date": self.as_of_date.isoformat(),
                "reference_date": self.reference_date.isoformat() if self.reference_date else None,
                "rows": [{**asdict(r), "as_of_date": r.as_of_date.isoformat(),
                          "reference_date": r.reference_date.isoformat()} for r in self.rows],
                "notes": self.notes}


def resolve_reference_date(settings: Settings, reference_date: date | None = None) -> tuple[date | None, str]:
    """The training snapshot date to compare with, and where it came from.

    Order: the argument, C360_PSI_REFERENCE_DATE, the `training_as_of_date` tag of the churn @champion model
    version in MLflow, else the `train_date` tag of the run that produced it (when the MLflow store exists).
    None when none of them is set.
    """
    if reference_date is not None:
        return reference_date, "argument"
    raw = settings.psi_reference_date
    if raw:
        return date.fromisoformat(raw), "C360_PSI_REFERENCE_DATE"
    uri = settings.mlflow_tracking_uri
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).exists():
        return None, "no MLflow store yet"
    try:
        from mlflow import MlflowClient

        client = MlflowClient(tracking_uri=uri)
        version = client.get_model_version_by_alias("churn", "champion")
        tag = (version.tags or {}).get(REFERENCE_TAG)
        if tag:
            return date.fromisoformat(tag[:10]), f"MLflow churn@champion tag {REFERENCE_TAG}"
        # the training job records its (newest) training snapshot as the run tag `train_date`
        train_date = (client.get_run(version.run_id).data.tags or {}).get("train_date") if version.run_id else None
        if train_date:
            return date.fromisoformat(train_date[:10]), "train_date of the churn@champion's MLflow run"
        return None, f"churn@champion has no {REFERENCE_TAG} tag and its run no train_date tag"
    except Exception as exc:  # no model, no alias, store unreachable: monitoring must not break the night
        return None, f"MLflow lookup failed: {str(exc).splitlines()[0][:200]}"


def compute_psi(settings: Settings, as_of_date: date, reference_date: date, *,
                features: tuple[str, ...] | None = None, scores: tuple[str, ...] | None = None) -> MonitoringResult:
    """PSI of features (feature-store Parquet) and scores (scores Parquet) at as_of_date vs reference_date."""
    warn, hold = psi_thresholds(settings)
    result = MonitoringResult(as_of_date, reference_date)
    sources = [
        ("feature", settings.feature_store_dir / "customer_features", "as_of_date",
         features or monitored_features(settings)),
        ("score", settings.scores_dir / "scores", "dt", scores or monitored_scores(settings)),
    ]
    for kind, root, key, columns in sources:
        cur_dir, ref_dir = _partition_dir(root, key, as_of_date), _partition_dir(root, key, reference_date)
        missing = [str(d) for d in (cur_dir, ref_dir) if not d.is_dir()]
        if missing:
            result.notes.append(f"{kind} PSI not computed: missing {', '.join(missing)}")
            continue
        cur, cur_skipped = _read_columns(cur_dir, columns)
        ref, ref_skipped = _read_columns(ref_dir, columns)
        result.notes.extend(f"{kind} {c}: {why}" for c, why in {**ref_skipped, **cur_skipped}.items())
        for col in columns:
            if col not in cur or col not in ref:
                continue
            try:
                categorical = isinstance(ref[col], list) or isinstance(cur[col], list)
                value, bins = (psi_categorical if categorical else psi_numeric)(ref[col], cur[col])
            except ValueError as exc:
                result.notes.append(f"{kind} {col}: {exc}")
                continue
            result.rows.append(PsiRow(as_of_date, reference_date, kind, col, round(value, 6),
                                      psi_status(value, warn, hold), bins, len(ref[col]), len(cur[col])))
    return result


def record_psi(con, result: MonitoringResult) -> None:
    """Replace the date's rows in monitoring.psi (delete + insert in one transaction: reruns are idempotent)."""
    from c360.pipeline.warehouse import rollback

    con.execute(_DDL)
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute(f"DELETE FROM {PSI_TABLE} WHERE as_of_date = $1", [result.as_of_date])
        now = datetime.now(UTC)
        if result.rows:
            con.executemany(
                f"INSERT INTO {PSI_TABLE} VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                [[r.as_of_date, r.reference_date, r.kind, r.name, r.psi, r.status, r.bins, r.reference_rows,
                  r.current_rows, now] for r in result.rows],
            )
        con.execute("COMMIT")
    except BaseException as exc:
        rollback(con, exc)  # never masks exc
        raise


def run_monitoring(settings: Settings | None, as_of_date: date, reference_date: date | None = None, *,
                   features: tuple[str, ...] | None = None, scores: tuple[str, ...] | None = None,
                   con=None) -> MonitoringResult:
    """The nightly step: resolve the reference, compute PSI, record it in monitoring.psi (even when empty)."""
    from c360.pipeline.warehouse import connect

    settings = settings or get_settings()
    ref, origin = resolve_reference_date(settings, reference_date)
    if ref is None:
        result = MonitoringResult(as_of_date, None, notes=[
            f"no reference date ({origin}): pass --reference-date, set C360_PSI_REFERENCE_DATE or tag the "
            f"churn @champion model version with {REFERENCE_TAG}=YYYY-MM-DD"])
    else:
        result = compute_psi(settings, as_of_date, ref, features=features, scores=scores)
        log.info("PSI for %s vs %s (reference from %s): %d values", as_of_date, ref, origin, len(result.rows))
    for note in result.notes:
        log.warning("%s", note)
    own = con is None
    con = con or connect(settings)
    try:
        record_psi(con, result)
    finally:
        if own:
            con.close()
    return result


# ---------------------------------------------------------------------------------------- the hold rule


@dataclass(frozen=True)
class HoldDecision:
    """Whether exports for a date must be held back; truthy when they must. `message` says why either way."""

    hold: bool
    message: str
    max_psi: float | None = None
    status: str = "not_checked"  # ok | warn | hold | not_checked
    offenders: tuple[dict, ...] = ()

    def __bool__(self) -> bool:
        return self.hold

    def as_dict(self) -> dict[str, Any]:
        return {"hold": self.hold, "status": self.status, "max_psi": self.max_psi, "message": self.message,
                "offenders": list(self.offenders)}


def read_psi(con, as_of_date: date) -> list[dict[str, Any]]:
    """The recorded PSI rows of a date ([] when monitoring never ran)."""
    from c360.pipeline.warehouse import relation_exists

    if not relation_exists(con, PSI_TABLE):
        return []
    cur = con.execute(
        f"""SELECT as_of_date, reference_date, kind, name, psi, status, bins, reference_rows, current_rows
            FROM {PSI_TABLE} WHERE as_of_date = $1 ORDER BY psi DESC, kind, name""", [as_of_date])
    cols = [d[0] for d in cur.description]
    return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]


def should_hold_exports(settings: Settings | None = None, as_of_date: date | None = None, *, con=None,
                        rows: list[dict] | None = None) -> HoldDecision:
    """Hold exports when any monitored PSI of the date is >= C360_PSI_HOLD (thresholds read now).

    No recorded rows means not checked: exports go ahead (monitoring lands separately), and the decision
    says so. Pass `rows` (from read_psi) or an open `con`; otherwise the warehouse is opened read-only.
    """
    if as_of_date is None:
        raise ValueError("should_hold_exports needs as_of_date")
    warn, hold = psi_thresholds(settings)
    if rows is None:
        settings = settings or get_settings()
        if con is None and not settings.warehouse_path.exists():
            rows = []
        elif con is not None:
            rows = read_psi(con, as_of_date)
        else:
            from c360.pipeline.warehouse import connect

            own = connect(settings, read_only=True)
            try:
                rows = read_psi(own, as_of_date)
            finally:
                own.close()
    if not rows:
        return HoldDecision(False, f"no drift check recorded for {as_of_date} in {PSI_TABLE}: exports not held")
    max_psi = max(r["psi"] for r in rows)
    offenders = tuple({"kind": r["kind"], "name": r["name"], "psi": r["psi"]} for r in rows if r["psi"] >= hold)
    ref = rows[0]["reference_date"]
    if offenders:
        listed = ", ".join(f"{o['kind']} {o['name']} (PSI {o['psi']:.3f})" for o in offenders)
        return HoldDecision(True, (
            f"Exports for {as_of_date} are held back: drift against the reference snapshot {ref} is above the hold "
            f"threshold C360_PSI_HOLD={hold} in {listed}. Check the run report (drift section), confirm the data "
            "or retrain, then export with --force (force=True) if the segments are still right."),
            max_psi, "hold", offenders)
    status = "warn" if max_psi >= warn else "ok"
    return HoldDecision(False, f"drift for {as_of_date} vs {ref}: max PSI {max_psi:.3f} ({status}; hold at {hold})",
                        max_psi, status)
