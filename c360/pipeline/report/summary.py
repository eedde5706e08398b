"""The report's first section, for people who have 30 seconds: a marketer or the engineer on call.

Built from the sections collect.py already gathered (no second read of the same facts) plus three small inputs
only this summary needs: the previous night's segment sizes, tonight's next-best-action counts and the
champion promotions of the night (collect.py reads them). Every part is a dict with `available`; an unavailable
part carries `reason`, like the sections. Each part also carries `sentences`: the plain words the HTML shows, so
the page and the JSON (`summary` in D.json, for alerting) say exactly the same thing.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Any

RUNBOOKS = "docs/runbooks.md"

# (pattern in the error, what to do, runbook anchor): the "A night failed" table of docs/runbooks.md in short.
# First match wins, so the specific errors come before the generic ones.
ADVICE: tuple[tuple[str, str, str], ...] = (
    (r"WarehouseLocked", "another process holds the warehouse (named in the error): let it finish, or stop it if "
     "it is stale, then rerun the night", "a-night-failed"),
    (r"No transactions files|wait_for_transactions", "the transactions extract for the date has not landed: check "
     "the upstream export and rerun when it has", "a-night-failed"),
    (r"ReconciliationError", "a file's landed rows are not loaded + quarantined: `c360 ingest --date <its dt>` "
     "reloads it", "a-night-failed"),
    (r"DbtRunError|dbt (build|run|test) failed", "a dbt model or data test failed (the dbt section below names it): fix the model or the "
     "raw data the test caught, then rerun", "a-night-failed"),
    (r"ScoringError|@champion", "there is no champion model to score with: retrain the models", "retrain-the-models"),
    (r"No space left", "the disk is full: free space where the error says, then rerun", "a-night-failed"),
    (r"Out of memory|MemoryError|OutOfMemory", "the process ran out of memory: give it more or process less at "
     "once, then rerun", "a-night-failed"),
    (r"S3 endpoint|NoSuchBucket|AccessDenied|No credentials", "the object store did not answer or refused: check "
     "it runs and the endpoint and credentials, then rerun", "a-night-failed"),
    (r"did not acknowledge destination|destination '", "a destination did not take the segments: once it is back, "
     "`c360 sync --date D` sends what is missing", "a-destination-sync-failed"),
    (r"ExportHeld", "exports are held (drift or volume, below): follow the hold's advice", "a-night-failed"),
    (r"stopped by", "the night was stopped by a signal: rerun the date", "a-night-failed"),
)
DEFAULT_ADVICE = ("read the error and the log it names, fix the cause, then rerun the night "
                  "(`make nightly DATE=D`)", "a-night-failed")


def unavailable(reason: Any) -> dict[str, Any]:
    reason = str(reason or "no reason recorded").rstrip(". ")
    return {"available": False, "reason": reason, "sentences": [f"not available: {reason}."]}


def _n(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) else str(value)


STATUS_WORDS = {"success": "ok"}
MAX_NAMED = 5  # segment changes named in the sentence (biggest first); the table has them all


def _hm(iso: str) -> str:
    """`2025-06-03T01:00:03+00:00` -> `2025-06-03 01:00`."""
    return iso[:16].replace("T", " ")


def _strip(text: Any) -> str:
    """A reason inside a sentence: without its own final full stop."""
    text = str(text or "").rstrip(". ")
    return text[:-2] + ")" if text.endswith(".)") else text


def _first_line(text: Any) -> str:
    lines = str(text or "").strip().splitlines()
    return lines[0][:300] if lines else ""


def advice_for(stage: str, error: str, day: date) -> tuple[str, str]:
    """(what to do, runbook link) for a failed stage's error."""
    # the error decides, not the stage's name (a "dbt" stage can fail on a lock or a full disk); a sync stage
    # whose error names no known cause still gets the sync runbook
    fallback = next((a[1:] for a in ADVICE if a[2] == "a-destination-sync-failed"), DEFAULT_ADVICE) \
        if stage == "sync" else DEFAULT_ADVICE
    do, anchor = next(((d, a) for pattern, d, a in ADVICE if re.search(pattern, error)), fallback)
    return do.replace("--date D`", f"--date {day}`").replace("DATE=D`", f"DATE={day}`"), f"{RUNBOOKS}#{anchor}"


# ------------------------------------------------------------------------------------------------ the parts


def run_part(stages: dict, day: date) -> dict[str, Any]:
    """What ran: each stage with its status, the total; failed stages first, each with its error and advice."""
    if not stages.get("available"):
        return unavailable(_strip(stages.get("reason")) or "no stage log")
    rows = stages["stages"]
    failed = [r for r in rows if r.get("status") == "failed"]
    ordered = failed + [r for r in rows if r.get("status") != "failed"]
    listed = []
    for r in ordered:
        item = {"stage": r["stage"], "status": r.get("status"), "seconds": r.get("seconds"),
                "attempts": r.get("attempts", 1)}
        if r.get("status") == "failed":
            error = _first_line(r.get("error")) or "no error recorded"
            item["error"], (item["do"], item["runbook"]) = error, advice_for(r["stage"], error, day)
        elif r.get("status") == "skipped" and r.get("note"):
            item["note"] = _first_line(r["note"])
        listed.append(item)
    starts = [str(r["started_at"]) for r in rows if r.get("started_at")]
    ends = [str(r["recorded_at"]) for r in rows if r.get("recorded_at")]
    status = "failed" if failed else "success"
    sentences = [f"Stage {f['stage']} FAILED: {f['error']}. What to do: {f['do']} ({f['runbook']})."
                 for f in listed if f["status"] == "failed"]
    parts = [f"{i['stage']} {STATUS_WORDS.get(i['status'], i['status'])}"
             + (f" after {i['attempts']} attempts" if i["attempts"] > 1 else "")
             for i in listed if i["status"] != "failed"]
    overview = (f"{len(listed)} stage(s) recorded for the night of {day}, {stages['total_seconds']:,} s in total"
                + (f" (from {_hm(min(starts))} to {_hm(max(ends))} UTC)" if starts and ends else "")
                + (": " + ", ".join(parts) if parts else "") + ".")
    sentences.append(overview)
    return {"available": True, "status": status, "overview": overview, "total_seconds": stages["total_seconds"],
            "started_at": min(starts) if starts else None, "finished_at": max(ends) if ends else None,
            "failed": [f["stage"] for f in listed if f["status"] == "failed"], "stages": listed,
            "sentences": sentences}


def _drift_offenders(decision: dict) -> str:
    return ", ".join(f"{o['kind']} {o['name']} (PSI {o['psi']:.2f})" for o in decision.get("offenders") or [])


def _volume_offenders(decision: dict) -> str:
    def n(x: Any) -> str:
        return "?" if x is None else f"{x:,.0f}" if float(x).is_integer() else f"{x:,.1f}"

    return "; ".join(f"{o['entity']} landed {n(o['landed'])} rows, expected {n(o['low'])} to {n(o['high'])}"
                     for o in decision.get("offenders") or [])


def _hold_item(kind: str, status: str, reason: str, sentence: str, runbook: str | None = None) -> dict[str, Any]:
    return {"kind": kind, "status": status, "reason": reason, "sentence": sentence,
            **({"runbook": runbook} if runbook else {})}


def holds_part(sections: dict, day: date) -> dict[str, Any]:
    """What was held, forced or released, and why; and whether the exports were written.

    A check that says hold while an export exists was either forced (the manifest says so) or passed when the
    export ran (a check recorded later, or thresholds changed since): `after_export`, so nobody reads "held" when
    files were published."""
    mon, vol, exp = sections.get("monitoring", {}), sections.get("volume", {}), sections.get("exports", {})
    manifest = exp if exp.get("available") else {}
    items: list[dict[str, Any]] = []

    def hold(kind: str, what: str, checked: dict, held_sentence: str, runbook: str) -> None:
        if checked.get("forced"):
            items.append(_hold_item(kind, "forced", what, f"Exports were forced despite a {kind} hold: {what}."))
        elif manifest:
            items.append(_hold_item(kind, "after_export", what, (
                f"The {kind} check says hold ({what}), but the export was written when it said "
                f"{checked.get('status') or 'nothing'}: check the {kind.capitalize()} section before it is used."),
                runbook))
        else:
            items.append(_hold_item(kind, "held", what, held_sentence, runbook))

    if vol.get("available") and vol["decision"]["status"] == "overridden":
        what = _volume_offenders(vol["decision"])
        items.append(_hold_item("volume", "released", what, (
            f"Volume out of range but released for this night (C360_VOLUME_OVERRIDE_DATE={day}): {what}.")))
    elif vol.get("available") and vol["decision"]["status"] == "hold":
        what = _volume_offenders(vol["decision"])
        book = f"{RUNBOOKS}#a-night-held-for-volume"
        hold("volume", what, manifest.get("volume_check") or {}, (
            f"Scoring and exports are held for volume: {what}. Check the extract with its owner; if the volume is "
            f"real, release the night with `c360 nightly --date {day} --accept-volume` ({book})."), book)
    if mon.get("available") and mon["exports"]["hold"]:
        what = _drift_offenders(mon["exports"])
        book = f"{RUNBOOKS}#a-night-failed"
        hold("drift", what, manifest.get("drift_check") or {}, (
            f"Exports are held for drift against {mon['reference_date']}: {what}, at or above the hold threshold "
            f"{mon['hold_threshold']}. Check the Drift section; if the segments are still right, export with "
            f"`c360 segments export --date {day} --force`, otherwise retrain ({book})."), book)
    forced = [i for i in items if i["status"] == "forced"]
    held = [i for i in items if i["status"] == "held"]
    if manifest:
        segments = manifest.get("segments") or []
        rows = sum(int(s.get("rows") or 0) for s in segments)
        exports = {"status": "forced" if forced else "exported", "export_id": manifest["export_id"],
                   "segments": len(segments), "rows": rows,
                   "sentence": f"Exports written: {len(segments)} segment file(s), {rows:,} row(s) in total "
                               f"(export {manifest['export_id']}; rows per segment in Exports below)."}
    else:
        exports = {"status": "held" if held else "not exported", "reason": exp.get("reason"),
                   "sentence": "No export was written: "
                               + ("held, see above." if held else f"{_strip(exp.get('reason'))}.")}
    sentences = [i["sentence"] for i in items]
    if not items:
        missing = [f"the {name} check did not run ({_strip(part.get('reason'))})"
                   for name, part in (("volume", vol), ("drift", mon)) if not part.get("available")]
        sentences.append("Nothing held or forced: "
                         + ("; ".join(missing) if missing else "the volume and drift checks passed") + ".")
    sentences.append(exports["sentence"])
    return {"available": True, "held": held, "forced": forced,
            "released": [i for i in items if i["status"] == "released"],
            "after_export": [i for i in items if i["status"] == "after_export"],
            "exports": exports, "sentences": sentences}


def segments_part(segments: dict, previous: dict, day: date) -> dict[str, Any]:
    """Members tonight and the previous night (the latest earlier date in marts.segment_members), delta, in/out."""
    if not segments.get("available"):
        return unavailable(segments.get("reason") or "no segments")
    tonight = {r["segment"]: r for r in segments["segments"]}
    before = previous.get("sizes") or {} if previous.get("available") else {}
    rows = []
    for seg in sorted(set(tonight) | set(before)):
        r = tonight.get(seg)
        members = r["members"] if r else 0
        last = before.get(seg, 0) if previous.get("available") else None
        rows.append({"segment": seg, "members": members, "previous_members": last,
                     "delta": None if last is None else members - last,
                     "entered": r["entered"] if r else None, "exited": r["exited"] if r else None})
    if previous.get("available"):
        moved = sorted((x for x in rows if x["delta"]), key=lambda x: (-abs(x["delta"]), x["segment"]))
        named = ", ".join(f"{x['segment']} {x['delta']:+,}" for x in moved[:MAX_NAMED])
        more = f" and {len(moved) - MAX_NAMED} more (table)" if len(moved) > MAX_NAMED else ""
        sentence = (f"{len(rows)} segment(s) on {day} against the previous night {previous['previous_date']}: "
                    + (named + more if moved else "no size changed") + ".")
    else:
        sentence = (f"{len(rows)} segment(s) on {day}; no change to show: "
                    f"{previous.get('reason') or 'no earlier night'}.")
    return {"available": True, "previous_date": previous.get("previous_date") if previous.get("available") else None,
            "previous_reason": None if previous.get("available") else previous.get("reason"),
            "segments": rows, "sentences": [sentence]}


def next_best_action_part(nba: dict, day: date) -> dict[str, Any]:
    if not nba.get("available"):
        return unavailable(nba.get("reason") or "no next-best actions")
    acts = [a for a in nba["actions"] if a["action"] != "none"]
    none = next((a for a in nba["actions"] if a["action"] == "none"), None)
    why = ", ".join(f"{k} {v:,}" for k, v in nba["suppressed_by"].items())
    sentence = (f"Next-best actions for {day}: "
                + (", ".join(f"{a['customers']:,} {a['action']}" for a in acts) if acts else "no action")
                + (f" ({nba['expected_value_eur']:,.0f} EUR expected)" if nba.get("expected_value_eur") else "")
                + (f"; {none['customers']:,} customer(s) get none" + (f" ({why})" if why else "") if none else "")
                + ".")
    return {**nba, "sentences": [sentence]}


def models_part(models: dict, promotions: dict) -> dict[str, Any]:
    """Champion versions, whether each passed its gates, and whether a new champion was promoted tonight."""
    if not models.get("available"):
        return unavailable(models.get("reason") or "no champion model")
    events = promotions.get("events") or [] if promotions.get("available") else []
    rows, sentences = [], []
    for m in models["models"]:
        if not m["available"]:
            rows.append({"name": m["name"], "available": False, "reason": m["reason"]})
            sentences.append(f"{m['name']}: not available: {_strip(m['reason'])}.")
            continue
        tags = m.get("tags") or {}
        status = m.get("validation_status")
        passed = (False if status == "failed" or tags.get("accepted_without_gates") == "true"
                  else True if status == "passed" else None)
        moved = [e for e in events if e["model_name"] == m["name"]]
        promoted = bool(moved) if promotions.get("available") else None
        rows.append({"name": m["name"], "available": True, "version": m["version"], "passed_gates": passed,
                     "validation_status": status, "serving": tags.get("serving"), "promoted_tonight": promoted,
                     "promotions": moved})
        gates = {True: "passed its gates", False: "did NOT pass its gates",
                 None: "no gate result recorded"}[passed]
        if promoted:
            last = moved[-1]
            how = "rolled back" if last["action"] == "rollback" else "promoted"
            came = f"from v{last['from_version']}" if last["from_version"] else "as the first champion"
            news = f"; NEW champion tonight ({how} {came} at {_hm(last['event_time'])} UTC)"
        else:
            news = "; no new champion tonight" if promoted is False else ""
        sentences.append(f"{m['name']} v{m['version']} is champion, {gates}{news}.")
    if not promotions.get("available"):
        sentences.append(f"Whether a champion was promoted tonight is not known: {_strip(promotions.get('reason'))}.")
    return {"available": True, "models": rows,
            "promoted_tonight": sorted({e["model_name"] for e in events}) if promotions.get("available") else None,
            "promotions_reason": None if promotions.get("available") else promotions.get("reason"),
            "sentences": sentences}


def _guarded(fn, *args) -> dict[str, Any]:
    try:
        return fn(*args)
    except Exception as exc:  # a bug in one summary part must not cost the report
        return unavailable(f"could not summarise it: {exc.__class__.__name__}: {_first_line(exc)}")


def build_summary(day: date, sections: dict, extras: dict, warnings: list[str]) -> dict[str, Any]:
    run = _guarded(run_part, sections.get("stages", {}), day)
    holds = _guarded(holds_part, sections, day)
    segs = _guarded(segments_part, sections.get("segments", {}), extras.get("segments_previous", {}), day)
    nba = _guarded(next_best_action_part, extras.get("next_best_action", {}), day)
    models = _guarded(models_part, sections.get("models", {}), extras.get("promotions", {}))
    if run.get("status") == "failed":
        status = "failed"
    elif holds.get("held"):
        status = "held"
    elif warnings or holds.get("forced") or holds.get("after_export"):
        status = "attention"
    elif not run.get("available"):
        status = "unknown"
    else:
        status = "ok"
    headline = {
        "failed": f"The night of {day} FAILED: {', '.join(run.get('failed') or [])}.",
        "held": f"The night of {day} ran, but its exports are held by the "
                + " and the ".join(f"{i['kind']} check" for i in holds.get("held") or []) + ".",
        "attention": f"The night of {day} ran, with {len(warnings)} warning(s) for the engineers below.",
        "unknown": f"No stage was recorded for the night of {day}: it may not have run.",
        "ok": f"The night of {day} ran without problems.",
    }[status]
    return {"date": day.isoformat(), "status": status, "headline": headline, "run": run, "holds": holds,
            "segments": segs, "next_best_action": nba, "models": models}
