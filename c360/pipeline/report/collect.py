"""Gather the facts of one night for the run report, section by section.

Every section is a dict with `available` (bool); unavailable ones carry `reason` ("no stage log at ...",
"marts.segment_members does not exist yet"), because the upstream parts land separately and the report
must still be written. A section that raises is reported as unavailable with the error, never fatal.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from c360.config import Settings
from c360.pipeline.dbt_failures import dbt_target_dir, read_failed_tests
from c360.pipeline.report.stages import read_night, stage_log_path
from c360.pipeline.report.summary import build_summary

log = logging.getLogger(__name__)

LAYERS = ("raw", "marts", "feature_store")
MODEL_NAMES = ("churn", "clv", "recommender")
SCORE_COLUMNS = ("churn_probability", "predicted_value_eur", "p_alive")
PROBABILITY_COLUMNS = ("churn_probability", "p_alive")  # histograms over the fixed range 0..1
HISTOGRAM_BINS = 20


def unavailable(reason: str) -> dict[str, Any]:
    return {"available": False, "reason": reason}


def _safe(name: str, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    try:
        return fn()
    except Exception as exc:  # one broken input must not cost the whole report
        log.warning("report section %s failed: %s", name, exc, exc_info=True)
        return unavailable(f"error while reading it: {exc.__class__.__name__}: {str(exc).splitlines()[0][:300]}")


# ------------------------------------------------------------------------------------------------ stages


def stages_section(settings: Settings, day: date) -> dict[str, Any]:
    records, earlier = read_night(settings, day)
    if not records and not earlier:
        return unavailable(f"no stage log at {stage_log_path(settings, day)} (the nightly job writes it)")
    latest: dict[str, dict] = {}
    attempts: Counter[str] = Counter()
    for rec in records:  # file order: the last line of a stage is its latest attempt
        latest[rec["stage"]] = rec
        attempts[rec["stage"]] += 1
    rows = [{**rec, "attempts": attempts[name]} for name, rec in latest.items()]
    # stages of earlier runs of the date that this run did not repeat: shown, not added to this run's total
    earlier_latest: dict[str, dict] = {}
    for rec in earlier:
        if rec["stage"] not in latest:
            earlier_latest[rec["stage"]] = rec
    return {"available": True, "stages": rows, "total_seconds": round(sum(float(r.get("seconds") or 0) for r in rows), 1),
            "failed": [r["stage"] for r in rows if r.get("status") == "failed"],
            "earlier_runs": list(earlier_latest.values())}


# --------------------------------------------------------------------------------------------- warehouse


def _relations(con, schemas: tuple[str, ...]) -> list[tuple[str, str, str]]:
    return con.execute(
        f"""SELECT table_schema, table_name, table_type FROM information_schema.tables
            WHERE table_schema IN ({', '.join('?' for _ in schemas)}) ORDER BY 1, 2""", list(schemas)).fetchall()


def _columns(con, schema: str, table: str) -> set[str]:
    return {r[0] for r in con.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = ? AND table_name = ?",
        [schema, table]).fetchall()}


def layers_section(con, day: date) -> dict[str, Any]:
    tables = []
    for schema, table, kind in _relations(con, LAYERS):
        entry: dict[str, Any] = {"layer": schema, "table": table, "type": "view" if kind == "VIEW" else "table"}
        if kind != "VIEW":  # counting a view runs its whole query: list it, do not count it
            entry["rows"] = con.execute(f'SELECT count(*) FROM "{schema}"."{table}"').fetchone()[0]
            cols = _columns(con, schema, table)
            date_col = "as_of_date" if "as_of_date" in cols else "_dt" if "_dt" in cols else None
            if date_col:
                entry["date_column"] = date_col
                entry["rows_for_date"] = con.execute(
                    f'SELECT count(*) FROM "{schema}"."{table}" WHERE {date_col} = ?', [day]).fetchone()[0]
        tables.append(entry)
    if not tables:
        return unavailable(f"no tables in the {', '.join(LAYERS)} schemas yet")
    totals = Counter()
    for t in tables:
        totals[t["layer"]] += t.get("rows") or 0
    return {"available": True, "tables": tables, "totals": dict(totals)}


def quarantine_section(con, day: date) -> dict[str, Any]:
    from c360.marketing.segments import relation_exists

    if not relation_exists(con, "raw.quarantine"):
        return unavailable("raw.quarantine does not exist (ingestion has not run)")
    rows = con.execute(
        """SELECT entity, reason, count(*) AS n FROM raw.quarantine WHERE _run_date = ?
           GROUP BY 1, 2 ORDER BY 3 DESC, 1, 2""", [day]).fetchall()
    return {"available": True, "total": sum(r[2] for r in rows),
            "by_reason": [{"entity": e, "reason": r, "rows": n} for e, r, n in rows]}


def segments_section(con, day: date, settings: Settings) -> dict[str, Any]:
    from c360.marketing.segments import relation_exists, segment_deltas

    if not relation_exists(con, "marts.segment_members"):
        return unavailable("marts.segment_members does not exist yet (dbt segment marts)")
    sizes = con.execute(
        """SELECT segment, count(*), count(*) FILTER (WHERE marketing_consent IS TRUE)
           FROM marts.segment_members WHERE as_of_date = ? GROUP BY 1 ORDER BY 1""", [day]).fetchall()
    if not sizes:
        return unavailable(f"marts.segment_members has no rows for {day}")
    deltas = segment_deltas(con, day)
    consent_required = {}
    try:
        from c360.marketing.segments import load_segments

        consent_required = {s.name: s.consent_column is not None for s in load_segments()}
    except Exception as exc:  # the report still shows sizes without the definitions
        log.warning("segments.yml not readable for the report: %s", exc)
    rows = []
    for seg, members, consenting in sizes:
        needs = consent_required.get(seg)
        rows.append({"segment": seg, "members": members, "with_marketing_consent": consenting,
                     "exportable": None if needs is None else (consenting if needs else members),
                     **deltas.get(seg, {"entered": 0, "exited": 0})})
    return {"available": True, "segments": rows}


def monitoring_section(con, day: date) -> dict[str, Any]:
    from c360.pipeline.monitoring import psi_thresholds, read_psi, should_hold_exports

    rows = read_psi(con, day)
    if not rows:
        return unavailable(f"no PSI recorded for {day} in monitoring.psi (run `c360 monitor --date {day}`)")
    warn, hold = psi_thresholds()
    decision = should_hold_exports(as_of_date=day, rows=rows)
    return {"available": True, "warn_threshold": warn, "hold_threshold": hold,
            "reference_date": rows[0]["reference_date"], "rows": rows, "exports": decision.as_dict()}


def volume_section(con, day: date, settings: Settings) -> dict[str, Any]:
    from c360.ingest.volume import check_volumes, decide, read_counts, read_recorded

    checks, source = read_recorded(con, day), "recorded by ingestion in monitoring.volume_checks"
    if not checks:
        checks = check_volumes(read_counts(con, day, settings.volume_lookback_days), day, settings)
        source = "computed from raw.ingest_audit (ingestion recorded nothing for the date)"
    if not checks:
        return unavailable(f"nothing landed for {day} or the nights before it (raw.ingest_audit)")
    return {"available": True, "source": source, "min_ratio": settings.volume_min_ratio,
            "max_ratio": settings.volume_max_ratio, "lookback": settings.volume_lookback_days,
            "rows": [c.as_dict() for c in checks], "decision": decide(checks, day, settings).as_dict()}


def model_versions_in_marts(con, day: date) -> dict[str, list[str]]:
    from c360.marketing.segments import relation_exists

    if not relation_exists(con, "marts.segment_members"):
        return {}
    out = {}
    for name in MODEL_NAMES:
        col = f"{name}_model_version"
        out[name] = [str(v) for (v,) in con.execute(
            f"SELECT DISTINCT {col} FROM marts.segment_members WHERE as_of_date = ? AND {col} IS NOT NULL ORDER BY 1",
            [day]).fetchall()]
    return out


def previous_segment_sizes(con, day: date) -> dict[str, Any]:
    """Members per segment on the previous night: the latest as_of_date before `day` in marts.segment_members
    (not necessarily day - 1: a night may have been skipped). Only the summary needs it."""
    from c360.marketing.segments import relation_exists

    if not relation_exists(con, "marts.segment_members"):
        return unavailable("marts.segment_members does not exist yet (dbt segment marts)")
    rows = con.execute(
        """SELECT as_of_date, segment, count(*) FROM marts.segment_members
           WHERE as_of_date = (SELECT max(as_of_date) FROM marts.segment_members WHERE as_of_date < ?)
           GROUP BY 1, 2 ORDER BY 2""", [day]).fetchall()
    if not rows:
        return unavailable(f"no night before {day} in marts.segment_members (the first night)")
    return {"available": True, "previous_date": rows[0][0].isoformat(), "sizes": {seg: n for _, seg, n in rows}}


NBA_ORDER = ("retain", "win_back", "upsell", "cross_sell", "nurture", "none")


def next_best_action_counts(con, day: date) -> dict[str, Any]:
    """Customers and expected value per next-best action of the date (docs/next_best_action.md), and what
    suppressed the `none`s. Only the summary needs it."""
    from c360.marketing.exports.query import NBA_MART
    from c360.marketing.segments import relation_exists

    if not relation_exists(con, NBA_MART):
        return unavailable(f"{NBA_MART} does not exist (built by dbt with the scores; docs/next_best_action.md)")
    rows = con.execute(
        f"""SELECT action, coalesce(suppressed_by, ''), count(*), sum(expected_value_eur)
            FROM {NBA_MART} WHERE as_of_date = ? GROUP BY 1, 2""", [day]).fetchall()
    if not rows:
        return unavailable(f"{NBA_MART} has no rows for {day} (no scores for the night, or it was held)")
    per_action: dict[str, dict[str, Any]] = {}
    suppressed: Counter[str] = Counter()
    for action, by, n, value in rows:
        entry = per_action.setdefault(action, {"action": action, "customers": 0, "expected_value_eur": 0.0})
        entry["customers"] += n
        entry["expected_value_eur"] += float(value or 0)
        if action == "none" and by:
            suppressed[by] += n
    rank = {a: i for i, a in enumerate(NBA_ORDER)}
    actions = sorted(per_action.values(), key=lambda a: (rank.get(a["action"], len(rank)), a["action"]))
    for a in actions:
        a["expected_value_eur"] = round(a["expected_value_eur"], 2)
    return {"available": True, "customers": sum(a["customers"] for a in actions), "actions": actions,
            "expected_value_eur": round(sum(a["expected_value_eur"] for a in actions), 2),
            "suppressed_by": dict(suppressed.most_common())}


# ------------------------------------------------------------------------------------------- files, MLflow


def dbt_section(settings: Settings, day: date) -> dict[str, Any]:
    path = dbt_target_dir(settings) / "run_results.json"  # DBT_TARGET_PATH when set, as dbt itself
    if not path.exists():
        return unavailable(f"no dbt results at {path} (dbt has not run here)")
    doc = json.loads(path.read_text(encoding="utf-8"))
    meta = doc.get("metadata", {})
    # the failed data tests' offending rows and what to do, recorded by the same dbt invocation (transform.run_dbt)
    explained = read_failed_tests(path.parent, meta.get("invocation_id"))
    by_type: dict[str, Counter] = {}
    problems = []
    for r in doc.get("results", []):
        rtype = str(r.get("unique_id", "unknown.")).split(".", 1)[0]
        status = str(r.get("status"))
        by_type.setdefault(rtype, Counter())[status] += 1
        if status in ("fail", "error", "warn", "runtime error"):
            problem = {"unique_id": r.get("unique_id"), "status": status, "failures": r.get("failures"),
                       "message": (r.get("message") or "")[:300]}
            test = explained.get(r.get("unique_id"))
            if test:
                problem.update({k: test.get(k) for k in ("name", "model", "column", "columns", "rows", "files",
                                                         "hint")})
            problems.append(problem)
    run_vars = (doc.get("args") or {}).get("vars") or {}
    if isinstance(run_vars, str):  # dbt stores --vars as given on the command line
        try:
            import yaml

            run_vars = yaml.safe_load(run_vars) or {}
        except Exception:
            run_vars = {}
    run_date = str(run_vars.get("run_date") or "") if isinstance(run_vars, dict) else ""
    tests = {k: v for k, v in by_type.items() if k in ("test", "unit_test")}
    return {"available": True, "path": str(path), "generated_at": meta.get("generated_at"),
            "invocation_id": meta.get("invocation_id"), "command": (doc.get("args") or {}).get("which"),
            "run_date_var": run_date or None,
            "note": (f"these results are from a dbt run for {run_date}, not {day}" if run_date and run_date != str(day)
                     else None),
            "by_type": {k: dict(v) for k, v in sorted(by_type.items())},
            "tests": {"total": sum(sum(c.values()) for c in tests.values()),
                      "passed": sum(c.get("pass", 0) for c in tests.values()),
                      "failed": sum(c.get("fail", 0) + c.get("error", 0) for c in tests.values()),
                      "warned": sum(c.get("warn", 0) for c in tests.values())},
            "problems": problems, "elapsed_seconds": doc.get("elapsed_time")}


def models_section(settings: Settings, versions_in_marts: dict[str, list[str]]) -> dict[str, Any]:
    uri = settings.mlflow_tracking_uri
    base = {"versions_in_segment_members": versions_in_marts}
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).exists():
        return {**unavailable(f"no MLflow store at {uri.removeprefix('sqlite:///')} (no model trained yet)"), **base}
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient(tracking_uri=uri)
    models = []
    for name in MODEL_NAMES:
        try:
            v = client.get_model_version_by_alias(name, "champion")
        except MlflowException as exc:
            models.append({"name": name, "available": False,
                           "reason": f"no {name}@champion ({str(exc).splitlines()[0][:150]})"})
            continue
        metrics: dict[str, float] = {}
        if v.run_id:
            try:
                metrics = dict(client.get_run(v.run_id).data.metrics)
            except MlflowException as exc:
                log.warning("run %s of %s v%s not readable: %s", v.run_id, name, v.version, exc)
        tags = dict(v.tags or {})
        models.append({"name": name, "available": True, "version": str(v.version), "run_id": v.run_id,
                       "created": datetime.fromtimestamp(v.creation_timestamp / 1000, UTC).isoformat(timespec="seconds")
                       if v.creation_timestamp else None,
                       "validation_status": tags.get("validation_status"),
                       "metrics": {k: metrics[k] for k in sorted(metrics)},
                       "tags": {k: tags[k] for k in sorted(tags) if not k.startswith("validation_checks")}})
    return {"available": any(m["available"] for m in models), "models": models, **base,
            **({} if any(m["available"] for m in models) else {"reason": "no @champion model registered yet"})}


def promotions(settings: Settings, since: str | None, until: str | None) -> dict[str, Any]:
    """@champion moves (promote, rollback) recorded in ml.registry's deployments audit between `since` (the
    night's first stage start) and `until` (its last stage record), so a later rebuild of the report does not
    count the next week's training. Read-only: the audit's writer creates the file, never the report."""
    import sqlite3

    if not since or not until:
        return unavailable("no stage log for the night, so no time window to look for promotions in")
    path = Path(settings.deployments_audit_path)
    if not path.exists():
        return unavailable(f"no deployments audit at {path} (no model promoted yet)")
    con = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=5)
    try:
        con.row_factory = sqlite3.Row
        rows = con.execute(
            """SELECT event_time, model_name, action, from_version, to_version FROM deployments
               WHERE alias = 'champion' AND action IN ('promote', 'rollback') AND event_time >= ? AND event_time <= ?
               ORDER BY event_id""", [_utc_iso(since), _utc_iso(until)]).fetchall()
    finally:
        con.close()
    return {"available": True, "since": since, "events": [dict(r) for r in rows]}


def _utc_iso(value: str) -> str:
    """The audit stores UTC ISO strings (`...+00:00`): compare like with like."""
    return datetime.fromisoformat(str(value)).astimezone(UTC).isoformat(timespec="seconds")


def _histogram(values, edges=None) -> dict[str, Any]:
    import numpy as np

    counts, edges = np.histogram(values, bins=HISTOGRAM_BINS if edges is None else edges)
    return {"edges": [round(float(e), 6) for e in edges], "counts": [int(c) for c in counts]}


def _read_scores(folder: Path) -> dict[str, Any]:
    import pyarrow.dataset as ds

    dataset = ds.dataset(str(folder), format="parquet")
    cols = [c for c in SCORE_COLUMNS if c in dataset.schema.names]
    table = dataset.to_table(columns=cols)
    import pyarrow as pa

    return {c: table.column(c).cast(pa.float64()).drop_null().to_numpy() for c in cols} | {"_rows": table.num_rows}


def scores_section(settings: Settings, day: date, reference_date: date | None) -> dict[str, Any]:
    import numpy as np

    folder = Path(settings.scores_dir) / "scores" / f"dt={day.isoformat()}"
    if not folder.is_dir():
        return unavailable(f"no scores at {folder} (scoring has not run for {day})")
    current = _read_scores(folder)
    ref_folder = Path(settings.scores_dir) / "scores" / f"dt={reference_date}" if reference_date else None
    reference = _read_scores(ref_folder) if ref_folder and ref_folder.is_dir() else {}
    out: dict[str, Any] = {"available": True, "path": str(folder), "rows": current.pop("_rows"),
                           "reference_date": str(reference_date) if reference else None, "columns": {}}
    for col, values in current.items():
        if values.size == 0:
            continue
        ref_values = reference.get(col)
        both = values if ref_values is None or not ref_values.size else np.concatenate([values, ref_values])
        if col in PROBABILITY_COLUMNS:
            lo, hi = 0.0, 1.0
        else:
            # Money is long-tailed: cut at the 99th percentile (of both nights) so the bulk stays visible.
            lo, hi = float(both.min()), float(np.quantile(both, 0.99))
        edges = np.linspace(lo, hi if hi > lo else lo + 1.0, HISTOGRAM_BINS + 1)
        entry = {"count": int(values.size), "mean": round(float(values.mean()), 6),
                 "p10": round(float(np.quantile(values, 0.1)), 6), "p50": round(float(np.quantile(values, 0.5)), 6),
                 "p90": round(float(np.quantile(values, 0.9)), 6), "max": round(float(values.max()), 6),
                 "histogram": _histogram(np.clip(values, lo, edges[-1]), edges)}
        if ref_values is not None and ref_values.size:
            entry["reference_histogram"] = _histogram(np.clip(ref_values, lo, edges[-1]), edges)
        out["columns"][col] = entry
    return out


def exports_section(settings: Settings, day: date) -> dict[str, Any]:
    from c360.marketing.exports import read_manifest
    from c360.storage import open_storage

    storage = open_storage(settings.export_uri, settings.s3_endpoint_url)
    manifest = read_manifest(storage, day)
    if manifest is None:
        return unavailable(f"no export manifest for {day} under {storage.uri}")
    return {"available": True, "export_id": manifest["export_id"], "generated_at": manifest["generated_at"],
            "manifest": storage.uri_of(f"dt={day}/manifest.json"), "drift_check": manifest.get("drift_check"),
            "volume_check": manifest.get("volume_check"),
            "segments": [{"segment": n, "rows": s["rows"], "excluded_without_consent": s["excluded_without_consent"],
                          "destination": s["destination"], "required_consent": s["required_consent"]}
                         for n, s in manifest["segments"].items()]}


# --------------------------------------------------------------------------------------------- warnings


def _dbt_problem(p: dict) -> str:
    """`test.c360.not_null_x.abc (fail, 3 failing rows)`: the node, its status and, for tests, the row count."""
    rows = p.get("failures")
    detail = p["status"] + (f", {rows:,} failing row(s)" if isinstance(rows, int) and rows > 0 else "")
    where = f" on {p['model']}" + (f".{p['column']}" if p.get("column") else "") if p.get("model") else ""
    files = f"; from {', '.join(p['files'][:3])}" if p.get("files") else ""
    return f"{p['unique_id']}{where} ({detail}{files})"


def collect_warnings(sections: dict[str, dict]) -> list[str]:
    warnings = []
    mon = sections.get("monitoring", {})
    if mon.get("available"):
        for r in mon["rows"]:
            if r["psi"] >= mon["warn_threshold"]:  # today's thresholds, like the hold rule
                level = "hold" if r["psi"] >= mon["hold_threshold"] else "warn"
                warnings.append(f"drift ({level}): {r['kind']} {r['name']} PSI {r['psi']:.3f} vs "
                                f"{r['reference_date']} (warn {mon['warn_threshold']}, hold {mon['hold_threshold']})")
        if mon["exports"]["hold"]:
            warnings.append("exports are held back: " + mon["exports"]["message"])
    vol = sections.get("volume", {})
    if vol.get("available") and vol["decision"]["status"] in ("hold", "overridden"):
        warnings.append(vol["decision"]["message"])
    st = sections.get("stages", {})
    for name in st.get("failed", []) if st.get("available") else []:
        rec = next(r for r in st["stages"] if r["stage"] == name)
        warnings.append(f"stage {name} failed" + (f": {rec['error']}" if rec.get("error") else ""))
    dbt = sections.get("dbt", {})
    if dbt.get("available"):
        if dbt["problems"]:
            warnings.append(f"dbt: {len(dbt['problems'])} node(s) failed or warned: "
                            + ", ".join(_dbt_problem(p) for p in dbt["problems"][:5]))
        if dbt.get("note"):
            warnings.append("dbt: " + dbt["note"])
    for m in (sections.get("models") or {}).get("models") or []:
        tags = m.get("tags") or {}
        if m.get("available") and (tags.get("accepted_without_gates") == "true"
                                    or m.get("validation_status") == "failed"):
            warnings.append(f"model {m['name']} v{m['version']} is @champion without passing its gates "
                            f"(validation_status {m.get('validation_status')!r}"
                            + (", accepted by C360_FIRST_CHAMPION=accept" if tags.get("accepted_without_gates") == "true"
                               else "") + "): its scores are not validated; train and promote a version that passes")
    exp = sections.get("exports", {})
    if exp.get("available") and (exp.get("drift_check") or {}).get("forced"):
        warnings.append("exports were forced despite a drift hold")
    if exp.get("available") and (exp.get("volume_check") or {}).get("forced"):
        warnings.append("exports were forced despite a volume hold")
    return warnings


# ----------------------------------------------------------------------------------------------- collect


def collect(settings: Settings, day: date) -> dict[str, Any]:
    """All sections for the date, as plain JSON-able data (dates become strings on output)."""
    from c360.pipeline.warehouse import WarehouseLocked, connect

    sections: dict[str, dict[str, Any]] = {"stages": _safe("stages", lambda: stages_section(settings, day))}
    wh_sections = ("layers", "quarantine", "volume", "segments", "monitoring")
    # inputs only the summary needs (not shown as sections of their own): read in the same warehouse session
    extras: dict[str, dict[str, Any]] = {}
    wh_extras = ("segments_previous", "next_best_action")
    versions: dict[str, list[str]] = {}
    if not settings.warehouse_path.exists():
        for name in wh_sections + wh_extras:
            (sections if name in wh_sections else extras)[name] = unavailable(
                f"no warehouse at {settings.warehouse_path} yet")
    else:
        try:
            con = connect(settings, read_only=True)
        except WarehouseLocked as exc:
            con = None
            for name in wh_sections + wh_extras:
                (sections if name in wh_sections else extras)[name] = unavailable(str(exc).split(". ")[0])
        if con is not None:
            try:
                sections["layers"] = _safe("layers", lambda: layers_section(con, day))
                sections["quarantine"] = _safe("quarantine", lambda: quarantine_section(con, day))
                sections["volume"] = _safe("volume", lambda: volume_section(con, day, settings))
                sections["segments"] = _safe("segments", lambda: segments_section(con, day, settings))
                sections["monitoring"] = _safe("monitoring", lambda: monitoring_section(con, day))
                versions = _safe("versions", lambda: {"v": model_versions_in_marts(con, day)}).get("v", {})
                extras["segments_previous"] = _safe("segments_previous", lambda: previous_segment_sizes(con, day))
                extras["next_best_action"] = _safe("next_best_action", lambda: next_best_action_counts(con, day))
            finally:
                con.close()
    ref = sections["monitoring"].get("reference_date") if sections["monitoring"].get("available") else None
    sections["dbt"] = _safe("dbt", lambda: dbt_section(settings, day))
    sections["models"] = _safe("models", lambda: models_section(settings, versions))
    sections["scores"] = _safe("scores", lambda: scores_section(settings, day, ref))
    sections["exports"] = _safe("exports", lambda: exports_section(settings, day))
    st = sections["stages"]
    night = list(st.get("stages") or []) if st.get("available") else []
    since = min((str(r["started_at"]) for r in night if r.get("started_at")), default=None)
    until = max((str(r["recorded_at"]) for r in night if r.get("recorded_at")), default=None)
    extras["promotions"] = _safe("promotions", lambda: promotions(settings, since, until or since))
    order = ("stages", "layers", "quarantine", "volume", "dbt", "models", "scores", "segments", "exports", "monitoring")
    warnings = collect_warnings(sections)
    return {"date": day.isoformat(), "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "summary": build_summary(day, sections, extras, warnings),
            "warnings": warnings, "sections": {k: sections[k] for k in order}}
