"""Write a date's segment exports atomically to EXPORT_URI (local folder or s3://), described by a manifest.

Layout under EXPORT_URI (docs/exports.md):

    dt=D/manifest.json                   the commit point: lists the published files with rows and sha256
    dt=D/run=<export_id>/<segment>.csv   full list (and .parquet, .entered.csv, .exited.csv)
    dt=D/_tmp-<export_id>/...            staging area of a run in progress (never referenced)

A run stages every file under `_tmp-<id>/`, reads each back and checks its sha256 and row count, copies
them to a fresh `run=<id>/` folder, checks those again, and only then replaces `manifest.json` (one atomic
write). Until that write the previous manifest and the folder it names are untouched, so a failure at any
point leaves the previous export valid. Old run folders are removed after a successful run, except the
one the previous manifest named (a reader may be downloading it right now).
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime

from c360.config import Settings, get_settings
from c360.ingest.volume import volume_hold
from c360.marketing.exports.files import rows_and_header, to_csv_bytes, to_parquet_bytes
from c360.marketing.exports.query import (
    DELTA_COLUMNS,
    NBA_EXPORT,
    ExportInputError,
    SegmentData,
    consent_rule_text,
    load_next_best_action_data,
    load_segment_data,
)
from c360.marketing.segments import Segment, get_segment, latest_segment_date, load_segments
from c360.pipeline.monitoring import HoldDecision, should_hold_exports
from c360.pipeline.warehouse import connect
from c360.storage import Storage, open_storage, sha256_bytes

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
MANIFEST_VERSION = 1
CONSENT_RULE = ("Customers without the consent a segment requires never appear in its files; the email and names "
                "are filled only for customers with marketing consent as of the date, whatever the segment.")


class ExportError(RuntimeError):
    """An export could not be written or verified; the previous manifest is still valid."""


class ExportHeld(ExportError):
    """Drift monitoring or the volume check says hold: nothing was written. The message says why and how to
    override."""


@dataclass(frozen=True)
class PlannedFile:
    segment: str
    kind: str  # csv | parquet | entered | exited
    name: str  # file name inside the run folder
    data: bytes
    rows: int
    columns: list[str]

    @property
    def sha256(self) -> str:
        return sha256_bytes(self.data)


def new_export_id() -> str:
    """Sortable and unique: UTC time plus randomness (two runs in the same second never share a folder)."""
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


def date_prefix(day: date) -> str:
    return f"dt={day.isoformat()}"


def read_manifest(storage: Storage, day: date) -> dict | None:
    """The published manifest of a date, or None when the date was never exported."""
    key = f"{date_prefix(day)}/{MANIFEST}"
    if not storage.exists(key):
        return None
    return json.loads(storage.read_bytes(key))


def _plan_files(data: SegmentData) -> list[PlannedFile]:
    name = data.segment.name
    delta_cols = list(DELTA_COLUMNS)
    full = [
        PlannedFile(name, "csv", f"{name}.csv", to_csv_bytes(data.columns, data.rows), len(data.rows), data.columns),
        PlannedFile(name, "parquet", f"{name}.parquet", to_parquet_bytes(data.columns, data.rows), len(data.rows),
                    data.columns),
    ]
    if not data.delta_files:
        return full
    return full + [
        PlannedFile(name, "entered", f"{name}.entered.csv", to_csv_bytes(delta_cols, data.entered),
                    len(data.entered), delta_cols),
        PlannedFile(name, "exited", f"{name}.exited.csv", to_csv_bytes(delta_cols, data.exited),
                    len(data.exited), delta_cols),
    ]


def _verify(storage: Storage, key: str, expected: PlannedFile) -> None:
    """Read a written object back: same sha256, same header, same row count, or ExportError."""
    data = storage.read_bytes(key)
    if sha256_bytes(data) != expected.sha256 or len(data) != len(expected.data):
        raise ExportError(f"{storage.uri_of(key)}: read back {len(data)} bytes with sha256 {sha256_bytes(data)}, "
                          f"wrote {len(expected.data)} bytes with sha256 {expected.sha256}")
    header, rows = rows_and_header(expected.name, data)
    if header != expected.columns or rows != expected.rows:
        raise ExportError(f"{storage.uri_of(key)}: read back {rows} rows with columns {header}, "
                          f"expected {expected.rows} rows with {expected.columns}")


def _segment_entry(data: SegmentData, files: list[PlannedFile], export_id: str, storage: Storage,
                   prefix: str, run_dir: str) -> dict:
    """The manifest entry of one segment; file paths are relative to the date folder (`run=<id>/<file>`)."""
    seg = data.segment
    return {
        "export_id": export_id,
        "run_id": data.run_ids[0] if len(data.run_ids) == 1 else (data.run_ids or None),
        "rows": len(data.rows),
        "members": data.members,
        "excluded_without_consent": data.excluded_without_consent,
        "entered": len(data.entered),
        "exited": len(data.exited),
        "required_consent": seg.required_consent,
        "consent_rule_applied": consent_rule_text(seg),
        "destination": seg.destination,
        "description": seg.description,
        "where": seg.where,
        "columns": data.columns,
        "model_versions": data.model_versions,
        "feature_snapshot_date": data.feature_snapshot_dates[0] if len(data.feature_snapshot_dates) == 1
        else (data.feature_snapshot_dates or None),
        "files": {
            f.kind: {"path": f"{run_dir}/{f.name}", "uri": storage.uri_of(f"{prefix}/{run_dir}/{f.name}"),
                     "rows": f.rows, "bytes": len(f.data), "sha256": f.sha256}
            for f in files
        },
        "warnings": data.warnings,
    }


def export_segments(as_of_date: date | None = None, settings: Settings | None = None, *,
                    only: list[str] | None = None, segments: list[Segment] | None = None,
                    segments_file=None, force: bool = False, storage: Storage | None = None) -> dict:
    """Export the segments of `as_of_date` (default: the latest in marts.segment_members); returns the manifest.

    `only`: names of the segments to (re)export; the others keep their entries from the previous manifest.
    The built-in `next_best_action` export (marts.customer_next_best_action's actions for consenting customers) is
    written with the segments when the warehouse has its model, and can be named in `only` like a segment.
    `force`: export even when drift monitoring (should_hold_exports) or the volume check (volume_hold) says hold;
    otherwise raises ExportHeld.
    Raises ExportError (nothing published, previous manifest intact) on any failure.
    """
    settings = settings or get_settings()
    chosen, with_actions = _choose(segments if segments is not None else load_segments(segments_file), only)
    storage = storage or open_storage(settings.export_uri, settings.s3_endpoint_url)
    if not settings.warehouse_path.exists():
        raise ExportError(f"No warehouse at {settings.warehouse_path}: run the nightly job first.")
    started = time.monotonic()
    inputs = _read_inputs(settings, as_of_date, chosen, with_actions, only=bool(only), force=force)
    day = inputs.day
    previous = read_manifest(storage, day)
    export_id = new_export_id()
    prefix = date_prefix(day)
    tmp_prefix, run_dir = f"{prefix}/_tmp-{export_id}", f"run={export_id}"
    planned = {d.segment.name: _plan_files(d) for d in inputs.loaded}
    _stage_and_publish(storage, [f for files in planned.values() for f in files], tmp_prefix, f"{prefix}/{run_dir}",
                       what=f"Export {export_id} for {day}")

    segment_entries = dict(previous["segments"]) if (previous and only) else {}
    segment_entries.update({d.segment.name: _segment_entry(d, planned[d.segment.name], export_id, storage, prefix,
                                                           run_dir)
                            for d in inputs.loaded})
    manifest = _manifest(inputs, export_id, storage, previous, segment_entries, force)
    # The commit point: one atomic write (rename locally, single PUT on S3). If it fails the run folder stays
    # (the write may have landed after all, e.g. an S3 timeout); the next run's garbage collection handles it.
    try:
        storage.write_bytes(f"{prefix}/{MANIFEST}", json.dumps(manifest, indent=2).encode("utf-8"))
    except Exception as exc:
        raise ExportError(f"Export {export_id} for {day}: writing {MANIFEST} failed ({exc.__class__.__name__}: "
                          f"{exc}); the previous manifest stays in force unless this write landed.") from exc
    _cleanup_quietly(storage, [tmp_prefix])
    _collect_garbage(storage, prefix, keep=_run_dirs(manifest) | _run_dirs(previous))
    log.info("Exported %d segment(s) for %s to %s in %.1f s (export %s)", len(inputs.loaded), day,
             storage.uri_of(f"{prefix}/{MANIFEST}"), time.monotonic() - started, export_id)
    return manifest


def _choose(defined: list[Segment], only: list[str] | None) -> tuple[list[Segment], bool]:
    """The segments to export and whether the built-in next-best-action export is among them."""
    if any(seg.name == NBA_EXPORT for seg in defined):
        raise ExportError(f"segments.yml defines a segment named {NBA_EXPORT!r}, the name of the built-in "
                          "next-best-action export (docs/exports.md): rename the segment.")
    chosen = [get_segment(defined, n) for n in only if n != NBA_EXPORT] if only else list(defined)
    return chosen, (not only or NBA_EXPORT in only)


@dataclass(frozen=True)
class ExportInputs:
    day: date
    drift: HoldDecision
    volume: HoldDecision
    loaded: list[SegmentData]


def _read_inputs(settings: Settings, as_of_date: date | None, chosen: list[Segment], with_actions: bool, *,
                 only: bool, force: bool) -> ExportInputs:
    """Everything the export writes, read from the warehouse in one read-only connection, after the drift and volume
    checks (ExportHeld when either says hold, unless forced)."""
    con = connect(settings, read_only=True)
    try:
        day = as_of_date or latest_segment_date(con)
        if day is None:
            raise ExportError("marts.segment_members is missing or empty: build the segment marts (dbt) first.")
        drift, volume = _holds(settings, day, con, force)
        try:
            loaded = [load_segment_data(con, seg, day) for seg in chosen]
            actions = load_next_best_action_data(con, day) if with_actions else None
        except ExportInputError as exc:
            raise ExportError(str(exc)) from exc
    finally:
        con.close()
    if actions is not None:
        loaded.append(actions)
    elif with_actions and not only:
        log.warning("No pii.next_best_action_export_rows in the warehouse (built before the next-best-action mart): "
                    "%s not exported; the next nightly dbt build creates it", NBA_EXPORT)
    elif with_actions:
        raise ExportError(f"{NBA_EXPORT} was asked for but the warehouse has no pii.next_best_action_export_rows: "
                          "build the dbt models first (dbt build --select +next_best_action_export_rows).")
    return ExportInputs(day, drift, volume, loaded)


def _holds(settings: Settings, day: date, con, force: bool) -> tuple[HoldDecision, HoldDecision]:
    """The drift and volume decisions for the date; raises ExportHeld on a hold unless forced."""
    decisions = (("Drift", should_hold_exports(settings, day, con=con)), ("Volume", volume_hold(settings, day, con=con)))
    for what, decision in decisions:
        if decision.hold and not force:
            raise ExportHeld(decision.message)
        if decision.hold:
            log.warning("%s says hold, exporting anyway (force): %s", what, decision.message)
    return decisions[0][1], decisions[1][1]


def _stage_and_publish(storage: Storage, files: list[PlannedFile], tmp_prefix: str, run_prefix: str, *,
                       what: str) -> None:
    """Write every file to the staging folder and verify it, then copy the verified bytes (as read back) into the run
    folder and verify them there too. On any failure both folders are removed (nothing refers to them yet, so the
    previous export is untouched) and ExportError is raised."""
    try:
        for f in files:
            storage.write_bytes(f"{tmp_prefix}/{f.name}", f.data)
        for f in files:
            _verify(storage, f"{tmp_prefix}/{f.name}", f)
        for f in files:
            storage.write_bytes(f"{run_prefix}/{f.name}", storage.read_bytes(f"{tmp_prefix}/{f.name}"))
        for f in files:
            _verify(storage, f"{run_prefix}/{f.name}", f)
    except BaseException as exc:
        _cleanup_quietly(storage, [tmp_prefix, run_prefix])
        if isinstance(exc, ExportError) or not isinstance(exc, Exception):
            raise
        raise ExportError(f"{what} failed before publishing ({exc.__class__.__name__}: {exc}); the previous manifest "
                          "is unchanged.") from exc


def _manifest(inputs: ExportInputs, export_id: str, storage: Storage, previous: dict | None, segment_entries: dict,
              force: bool) -> dict:
    run_ids = sorted({rid for d in inputs.loaded for rid in d.run_ids})
    return {
        "manifest_version": MANIFEST_VERSION,
        "as_of_date": inputs.day.isoformat(),
        "export_id": export_id,
        "run_id": run_ids[0] if len(run_ids) == 1 else (run_ids or None),
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "export_uri": storage.uri,
        "previous_export_id": previous.get("export_id") if previous else None,
        "consent_rule": CONSENT_RULE,
        "drift_check": {**inputs.drift.as_dict(), "forced": bool(force and inputs.drift.hold)},
        "volume_check": {**inputs.volume.as_dict(), "forced": bool(force and inputs.volume.hold)},
        "segments": dict(sorted(segment_entries.items())),
    }


def _run_dirs(manifest: dict | None) -> set[str]:
    if not manifest:
        return set()
    return {f["path"].split("/", 1)[0] for s in manifest["segments"].values() for f in s["files"].values()}


def _cleanup_quietly(storage: Storage, prefixes: list[str]) -> None:
    # Unreferenced folders only; if storage is what failed, the next successful run collects them.
    for p in prefixes:
        try:
            storage.delete_prefix(p)
        except Exception as exc:
            log.warning("Could not remove %s (%s); the next export of the date removes it", storage.uri_of(p), exc)


def _collect_garbage(storage: Storage, prefix: str, keep: set[str]) -> None:
    """Delete run folders no manifest (current or previous) refers to, and staging left by crashed runs."""
    stale = [d for d in storage.list_dirs(prefix)
             if (d.startswith("run=") and d not in keep) or d.startswith("_tmp-")]
    _cleanup_quietly(storage, [f"{prefix}/{d}" for d in stale])


def verify_export(as_of_date: date, settings: Settings | None = None, storage: Storage | None = None) -> dict:
    """Check the published manifest of a date against its files (bytes, sha256, rows); returns the manifest."""
    settings = settings or get_settings()
    storage = storage or open_storage(settings.export_uri, settings.s3_endpoint_url)
    manifest = read_manifest(storage, as_of_date)
    if manifest is None:
        raise ExportError(f"No {MANIFEST} for {as_of_date} under {storage.uri}")
    prefix = date_prefix(as_of_date)
    problems = []
    for name, entry in manifest["segments"].items():
        for kind, f in entry["files"].items():
            key = f"{prefix}/{f['path']}"
            try:
                data = storage.read_bytes(key)
            except Exception as exc:
                problems.append(f"{name} {kind}: cannot read {storage.uri_of(key)} ({exc.__class__.__name__})")
                continue
            _, rows = rows_and_header(f["path"], data)
            if sha256_bytes(data) != f["sha256"] or len(data) != f["bytes"] or rows != f["rows"]:
                problems.append(f"{name} {kind}: {storage.uri_of(key)} does not match the manifest")
    if problems:
        raise ExportError(f"Export of {as_of_date} is inconsistent:\n  " + "\n  ".join(problems))
    return manifest
