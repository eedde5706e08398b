"""What the segments page shows, read from a warehouse copy (c360/marketing/ui/snapshot.py), the export manifest and the
nightly's stage log. Only reads: every number comes from a dbt model (segment_evaluations, segment_members,
segment_changes, pii.segment_export_rows) or from a file the nightly published; nothing is re-derived here.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from c360.config import Settings
from c360.marketing.segments import Segment, latest_segment_date, segment_deltas
from c360.pipeline.warehouse import relation_exists

log = logging.getLogger(__name__)

MODEL_COLUMNS = {"churn": "churn_model_version", "clv": "clv_model_version",
                 "recommender": "recommender_model_version"}
FILE_KINDS = ("csv", "parquet", "entered", "exited")
# marts.customer_scores' churn reasons (the scores contract: dbt_project/macros/score_views.sql)
REASON_COLUMNS = ["churn_reason_1", "churn_reason_2", "churn_reason_3"]
PREVIEW_ROWS = 5


@dataclass
class SegmentFacts:
    segment: Segment
    generated: bool  # expanded from segments.yml's per_category template (edit the template, not the segment)
    size: int | None  # members tonight; None when the segment was not evaluated tonight (e.g. added since)
    with_consent: int | None
    entered: int
    exited: int
    trend: list[tuple[date, int | None]]
    preview: list[dict[str, Any]]
    files: dict[str, dict[str, Any]]  # kind -> manifest entry (empty when tonight was not exported)
    exported_rows: int | None
    warnings: list[str] = field(default_factory=list)


@dataclass
class PageFacts:
    as_of_date: date | None
    segments: list[SegmentFacts]
    model_versions: dict[str, list[str]]
    drift: dict[str, Any]
    volume: dict[str, Any]
    export_sentence: str | None  # a plain sentence when tonight's export was held, failed or is not there yet
    manifest: dict | None
    notes: list[str] = field(default_factory=list)


# ------------------------------------------------------------------------------------------------ warehouse


def evaluated_sizes(con, dates: list[date]) -> dict[tuple[date, str], tuple[int | None, int | None]]:
    """(date, segment) -> (members, members with marketing consent) from marts.segment_evaluations (dbt), or from
    segment_members counts when that model is missing; members is None for a segment dbt could not evaluate."""
    if not dates:
        return {}
    marks = ", ".join("?" for _ in dates)
    if relation_exists(con, "marts.segment_evaluations"):
        rows = con.execute(f"""SELECT as_of_date, segment, members, members_with_marketing_consent, is_evaluated
                               FROM marts.segment_evaluations WHERE as_of_date IN ({marks})""", dates).fetchall()
        return {(d, s): ((m, c) if ok else (None, None)) for d, s, m, c, ok in rows}
    rows = con.execute(f"""SELECT as_of_date, segment, count(*), count(*) FILTER (WHERE marketing_consent IS TRUE)
                           FROM marts.segment_members WHERE as_of_date IN ({marks}) GROUP BY 1, 2""", dates).fetchall()
    return {(d, s): (m, c) for d, s, m, c in rows}


def recent_dates(con, day: date, nights: int) -> list[date]:
    table = "marts.segment_evaluations" if relation_exists(con, "marts.segment_evaluations") else "marts.segment_members"
    rows = con.execute(f"SELECT DISTINCT as_of_date FROM {table} WHERE as_of_date <= ? ORDER BY 1 DESC LIMIT ?",
                       [day, nights]).fetchall()
    return sorted(r[0] for r in rows)


def member_preview(con, day: date, rows_per_segment: int = PREVIEW_ROWS) -> dict[str, list[dict[str, Any]]]:
    """A few members per segment with their email only where dbt's consent decision (`consent_ok` of
    pii.segment_export_rows, the rows the exports write) allows it; the model already blanks the others. Each
    member carries the churn model's top reasons of the night (marts.customer_scores.churn_reason_1..3), when the
    warehouse has them."""
    if not relation_exists(con, "pii.segment_export_rows"):
        return {}
    with_reasons = has_columns(con, "marts.customer_scores", REASON_COLUMNS)
    picked = ", ".join(f"{'s.' + c if with_reasons else 'NULL'} AS {c}" for c in REASON_COLUMNS)
    scores = ("LEFT JOIN marts.customer_scores AS s ON s.as_of_date = r.as_of_date AND s.customer_id = r.customer_id"
              if with_reasons else "")
    rows = con.execute(f"""
        SELECT segment, customer_id, email, consent_ok, churn_decile, value_decile, {", ".join(REASON_COLUMNS)} FROM (
            SELECT r.segment, r.customer_id, r.email, r.consent_ok, r.churn_decile, r.value_decile, {picked},
                   row_number() OVER (PARTITION BY r.segment ORDER BY r.customer_id) AS n
            FROM pii.segment_export_rows AS r {scores}
            WHERE r.as_of_date = ? AND r.is_member)
        WHERE n <= ? ORDER BY segment, customer_id""", [day, rows_per_segment]).fetchall()
    out: dict[str, list[dict[str, Any]]] = {}
    for segment, customer, email, ok, churn_decile, value_decile, *why in rows:
        out.setdefault(segment, []).append({
            "customer_id": customer, "consent": bool(ok),
            "email": email if ok and email else None,  # None: shown masked, never read for these customers
            "churn_decile": churn_decile, "value_decile": value_decile,
            "churn_reasons": [w for w in why if w]})
    return out


def has_columns(con, qualified_name: str, columns: list[str]) -> bool:
    """Whether schema.table exists with all `columns` (a warehouse built before they existed has not)."""
    schema, _, table = qualified_name.partition(".")
    found = {r[0] for r in con.execute("SELECT column_name FROM information_schema.columns "
                                       "WHERE table_schema = $1 AND table_name = $2", [schema, table]).fetchall()}
    return set(columns) <= found


def model_versions(con, day: date) -> dict[str, list[str]]:
    """The model versions behind tonight's scores in marts.segment_members (what the exports carry)."""
    if not relation_exists(con, "marts.segment_members"):
        return {}
    out = {}
    for name, col in MODEL_COLUMNS.items():
        out[name] = [str(v) for (v,) in con.execute(
            f"SELECT DISTINCT {col} FROM marts.segment_members WHERE as_of_date = ? AND {col} IS NOT NULL ORDER BY 1",
            [day]).fetchall()]
    return out


# ------------------------------------------------------------------------------------------------ published files


def read_manifest_quietly(settings: Settings, day: date) -> tuple[dict | None, str | None]:
    from c360.marketing.exports import read_manifest
    from c360.storage import open_storage

    try:
        return read_manifest(open_storage(settings.export_uri, settings.s3_endpoint_url), day), None
    except Exception as exc:  # noqa: BLE001 - the page still shows the warehouse facts
        return None, f"the export manifest of {day} could not be read ({exc.__class__.__name__}: {exc})"


def export_stage(settings: Settings, day: date) -> dict | None:
    """The latest record of the night's export (or score) stage that did not succeed, from the stage log the
    nightly appends to (c360/pipeline/report/stages.py): a hold is recorded there as `skipped` with the reason in `note`."""
    from c360.pipeline.report.stages import read_night

    records, _ = read_night(settings, day)
    latest: dict[str, dict] = {}
    for rec in records:
        latest[rec["stage"]] = rec
    for stage in ("export", "score"):
        rec = latest.get(stage)
        if rec and rec.get("status") in ("skipped", "failed"):
            return rec
    return None


def export_sentence(day: date, manifest: dict | None, stage: dict | None, drift: dict, volume: dict) -> str | None:
    """One plain sentence for marketing about tonight's files; None when they were exported normally."""
    if manifest is not None:
        forced = [c for c in ("drift_check", "volume_check") if (manifest.get(c) or {}).get("forced")]
        if forced:
            why = " ".join((manifest[c].get("message") or "") for c in forced).strip()
            return (f"The export of {day} was released by hand (--force) although the checks said hold: {why}")
        return None
    if stage is not None:
        reason = stage.get("note") or stage.get("error") or "no reason was recorded"
        if stage["status"] == "skipped":
            what = "scoring and the export were" if stage["stage"] == "score" else "the export was"
            return f"Tonight's files are not published: {what} held back on {day}. Why: {reason}"
        return f"Tonight's files are not published: the {stage['stage']} step of {day} failed: {reason}"
    for check in (drift, volume):
        if check.get("hold"):
            return f"Tonight's files are not published: the export of {day} is held back. Why: {check['message']}"
    return (f"Tonight's files are not published yet: the nightly has not reached the export step for {day} "
            "(or stopped before it; the run report says where).")


# ------------------------------------------------------------------------------------------------ the page


@dataclass(frozen=True)
class WarehouseFacts:
    """What the page reads from one warehouse copy: computed once per copy (the member preview reads the export-rows
    view, the slowest query at M) and reused until the next copy."""

    day: date | None
    dates: list[date]
    sizes: dict[tuple[date, str], tuple[int | None, int | None]]
    deltas: dict[str, dict[str, int]]
    preview: dict[str, list[dict[str, Any]]]
    versions: dict[str, list[str]]
    drift: dict[str, Any]  # the same decisions the export makes (c360/marketing/exports/export.py), on the copy
    volume: dict[str, Any]


def read_warehouse(con, settings: Settings, nights: int) -> WarehouseFacts:
    from c360.ingest.volume import volume_hold
    from c360.pipeline.monitoring import should_hold_exports

    day = latest_segment_date(con)
    if day is None:
        return WarehouseFacts(None, [], {}, {}, {}, {}, {}, {})
    dates = recent_dates(con, day, nights)
    return WarehouseFacts(day, dates, evaluated_sizes(con, dates), segment_deltas(con, day), member_preview(con, day),
                          model_versions(con, day), should_hold_exports(settings, day, con=con).as_dict(),
                          volume_hold(settings, day, con=con).as_dict())


def compose_page(wh: WarehouseFacts, settings: Settings, segments: list[Segment], generated: set[str]) -> PageFacts:
    """The page for the latest date of the copy: its warehouse facts plus what was published for that night (the
    export manifest, the stage log), read on every request because they change without the warehouse changing."""
    day = wh.day
    if day is None:
        return PageFacts(None, [SegmentFacts(s, s.name in generated, None, None, 0, 0, [], [], {}, None)
                                for s in segments], {}, {}, {}, "No segments have been built yet: run the nightly.",
                         None)
    manifest, manifest_problem = read_manifest_quietly(settings, day)
    drift, volume = wh.drift, wh.volume
    if manifest is not None:  # what the export decided when it ran (and whether someone forced it)
        drift, volume = manifest.get("drift_check") or drift, manifest.get("volume_check") or volume
    sentence = export_sentence(day, manifest, export_stage(settings, day), drift, volume)
    out = []
    for s in segments:
        members, consenting = wh.sizes.get((day, s.name), (None, None))
        entry = (manifest or {}).get("segments", {}).get(s.name) or {}
        facts = SegmentFacts(
            segment=s, generated=s.name in generated, size=members, with_consent=consenting,
            entered=wh.deltas.get(s.name, {}).get("entered", 0), exited=wh.deltas.get(s.name, {}).get("exited", 0),
            trend=[(d, wh.sizes.get((d, s.name), (None, None))[0]) for d in wh.dates],
            preview=wh.preview.get(s.name, []),
            files={k: entry["files"][k] for k in FILE_KINDS if k in entry.get("files", {})},
            exported_rows=entry.get("rows"), warnings=list(entry.get("warnings") or []))
        if members is None:
            facts.warnings.append(f"not evaluated on {day} (added to segments.yml since, or a score rule on a night "
                                  "without scores): the next nightly builds it")
        out.append(facts)
    return PageFacts(day, out, wh.versions, drift, volume, sentence, manifest,
                     notes=[manifest_problem] if manifest_problem else [])


def collect_page(con, settings: Settings, segments: list[Segment], generated: set[str], nights: int) -> PageFacts:
    """Everything the segments page shows, for the latest date in the warehouse copy `con` (uncached)."""
    return compose_page(read_warehouse(con, settings, nights), settings, segments, generated)


def api_sizes(con, segments: list[Segment]) -> list[dict[str, Any]]:
    """[{name, as_of_date, size}] for every segment of segments.yml at the latest date (size None: not evaluated)."""
    day = latest_segment_date(con)
    sizes = evaluated_sizes(con, [day]) if day else {}
    return [{"name": s.name, "as_of_date": day.isoformat() if day else None,
             "size": sizes.get((day, s.name), (None, None))[0] if day else None} for s in segments]
