"""Render the collected facts as one self-contained HTML page (inline CSS, plots as embedded PNG).

Plots use matplotlib's object API with the Agg canvas (no pyplot state, no display needed), so rendering
works in Airflow workers and threads alike.
"""

from __future__ import annotations

import base64
import html
import io
import re
from typing import Any

CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;max-width:1100px;color:#222}
h1{font-size:1.6em} h2{font-size:1.25em;border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.5em 0;font-size:.9em} td,th{border:1px solid #ddd;padding:.25em .6em}
th{background:#f4f4f4;text-align:left} td.n{text-align:right;font-variant-numeric:tabular-nums}
.na{color:#777;font-style:italic} .warn{background:#fff4e0;border-left:4px solid #e67e22;padding:.5em 1em}
.ok{color:#1e7e34} .bad{color:#b00020;font-weight:bold} .hold{color:#b00020;font-weight:bold}
img{max-width:100%} code{background:#f4f4f4;padding:0 .2em}
"""


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _num(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.4g}" if abs(value) < 1000 else f"{value:,.0f}"
    return _e(value)


def _table(headers: list[str], rows: list[list[Any]], numeric: set[int] | None = None) -> str:
    numeric = numeric or set()
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f'<td class="n">{_num(v)}</td>' if i in numeric else f"<td>{_e(v)}</td>"
                         for i, v in enumerate(r)) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _na(section: dict) -> str:
    return f'<p class="na">not available: {_e(section.get("reason"))}</p>'


def _png(fig) -> str:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    return f'<img alt="plot" src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode("ascii")}">'


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height))


def plot_stages(stages: list[dict]) -> str:
    fig = _figure(7, 0.4 * len(stages) + 1)
    ax = fig.add_subplot()
    names = [s["stage"] for s in stages][::-1]
    secs = [float(s.get("seconds") or 0) for s in stages][::-1]
    colors = ["#c0392b" if s.get("status") == "failed" else "#2e86c1" for s in stages][::-1]
    ax.barh(names, secs, color=colors)
    ax.set_xlabel("seconds")
    ax.set_title("Stage timings (latest attempt)")
    return _png(fig)


def plot_scores(columns: dict[str, dict]) -> str:
    fig = _figure(4.2 * len(columns), 3.2)
    for i, (name, entry) in enumerate(columns.items(), start=1):
        ax = fig.add_subplot(1, len(columns), i)
        h = entry["histogram"]
        edges, counts = h["edges"], h["counts"]
        total = max(sum(counts), 1)
        ax.stairs([c / total for c in counts], edges, fill=True, alpha=0.6, label="tonight")
        ref = entry.get("reference_histogram")
        if ref:
            rtotal = max(sum(ref["counts"]), 1)
            ax.stairs([c / rtotal for c in ref["counts"]], ref["edges"], color="black", linewidth=1.2,
                      label="reference")
            ax.legend(fontsize=7)
        ax.set_title(name, fontsize=9)
        ax.set_ylabel("share of customers" if i == 1 else "")
        ax.tick_params(labelsize=7)
    return _png(fig)


def plot_segments(rows: list[dict]) -> str:
    fig = _figure(7, 0.35 * len(rows) + 1.2)
    ax = fig.add_subplot()
    names = [r["segment"] for r in rows][::-1]
    ax.barh(names, [r["members"] for r in rows][::-1], color="#aed6f1", label="members")
    ax.barh(names, [r["exportable"] if r.get("exportable") is not None else 0 for r in rows][::-1],
            color="#2e86c1", height=0.45, label="exported (consent rule applied)")
    ax.set_xlabel("customers")
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title("Segment sizes")
    return _png(fig)


def _render_stages(s: dict) -> str:
    if not s["available"]:
        return _na(s)
    rows = [[r["stage"], r.get("status"), r.get("started_at"), r.get("seconds"), r.get("rows"), r["attempts"],
             r.get("error") or r.get("note", "")] for r in s["stages"]]
    earlier = ", ".join(f"{r['stage']} ({r.get('seconds')} s)" for r in s.get("earlier_runs") or [])
    note = (f"<p>Recorded by an earlier run of the date, not repeated by this one (not in the total): "
            f"{_e(earlier)}</p>" if earlier else "")
    return (f"<p>Total {s['total_seconds']:,} s over {len(rows)} stage(s) of this run.</p>"
            + _table(["stage", "status", "started", "seconds", "rows", "attempts", "error / note"], rows, {3, 4, 5})
            + note + plot_stages(s["stages"]))


def _render_layers(s: dict) -> str:
    if not s["available"]:
        return _na(s)
    rows = [[t["layer"], t["table"], t["type"], t.get("rows"), t.get("rows_for_date")] for t in s["tables"]]
    return _table(["layer", "table", "type", "rows", "rows for the date"], rows, {3, 4})


def _render_quarantine(s: dict) -> str:
    if not s["available"]:
        return _na(s)
    if not s["by_reason"]:
        return '<p class="ok">No row quarantined by this run.</p>'
    return (f"<p>{s['total']:,} row(s) quarantined by this run.</p>"
            + _table(["entity", "reason", "rows"], [[r["entity"], r["reason"], r["rows"]] for r in s["by_reason"]],
                     {2}))


def _render_dbt(s: dict) -> str:
    if not s["available"]:
        return _na(s)
    t = s["tests"]
    parts = [f"<p>dbt <code>{_e(s.get('command'))}</code> at {_e(s.get('generated_at'))} "
             f"(run_date var {_e(s.get('run_date_var') or 'default')}): tests {t['passed']:,} passed, "
             f'<span class="{"bad" if t["failed"] else "ok"}">{t["failed"]:,} failed</span>, {t["warned"]:,} warned '
             f"of {t['total']:,}.</p>"]
    if s.get("note"):
        parts.append(f'<p class="na">{_e(s["note"])}</p>')
    parts.append(_table(["resource", "statuses"], [[k, ", ".join(f"{st}: {n}" for st, n in v.items())]
                                                    for k, v in s["by_type"].items()]))
    if s["problems"]:
        parts.append(_table(["node", "status", "failures", "message"],
                            [[p["unique_id"], p["status"], p["failures"], p["message"]] for p in s["problems"]]))
    for p in s["problems"]:  # a failed data test: its offending rows and what to do (c360/pipeline/dbt_failures.py)
        if not p.get("hint"):
            continue
        where = (p.get("model") or "") + (f", column {p['column']}" if p.get("column") else "")
        parts.append(f'<p class="bad">Test <code>{_e(p.get("name"))}</code> on <code>{_e(where)}</code>: '
                     f"first {len(p.get('rows') or [])} offending row(s).</p>")
        if p.get("rows"):
            parts.append(_table(p.get("columns") or [], p["rows"]))
        parts.append(f"<p>What to do: {_e(p['hint'])}</p>")
    return "".join(parts)


def _render_models(s: dict) -> str:
    parts = []
    if not s["available"]:
        parts.append(_na(s))
    for m in s.get("models", []):
        if not m["available"]:
            parts.append(f'<p class="na">{_e(m["name"])}: not available: {_e(m["reason"])}</p>')
            continue
        parts.append(f"<h3>{_e(m['name'])} v{_e(m['version'])} @champion</h3><p>run {_e(m['run_id'])}, "
                     f"registered {_e(m['created'])}, validation {_e(m.get('validation_status') or 'not recorded')}</p>")
        if m["metrics"]:
            parts.append(_table(["metric", "value"], [[k, v] for k, v in m["metrics"].items()], {1}))
    versions = s.get("versions_in_segment_members") or {}
    if versions:
        parts.append("<p>Versions in tonight's marts.segment_members: "
                     + ", ".join(f"{_e(k)} {_e(', '.join(v) or '-')}" for k, v in versions.items()) + "</p>")
    return "".join(parts)


def _render_scores(s: dict) -> str:
    if not s["available"]:
        return _na(s)
    if not s["columns"]:
        return f'<p class="na">not available: no score column in {_e(s["path"])}</p>'
    rows = [[k, v["count"], v["mean"], v["p10"], v["p50"], v["p90"], v["max"]] for k, v in s["columns"].items()]
    ref = f" Black line: reference scores of {_e(s['reference_date'])}." if s.get("reference_date") else ""
    return (f"<p>{s['rows']:,} customers scored.{ref} predicted_value_eur is cut at its 99th percentile.</p>"
            + _table(["score", "count", "mean", "p10", "p50", "p90", "max"], rows, {1, 2, 3, 4, 5, 6})
            + plot_scores(s["columns"]))


def _render_segments(s: dict) -> str:
    if not s["available"]:
        return _na(s)
    rows = [[r["segment"], r["members"], r["with_marketing_consent"], r["exportable"], r["entered"], r["exited"]]
            for r in s["segments"]]
    return (_table(["segment", "members", "with consent", "exported", "entered", "exited"], rows, {1, 2, 3, 4, 5})
            + "<p>entered / exited count all members, before the consent rule.</p>" + plot_segments(s["segments"]))


def _render_exports(s: dict) -> str:
    if not s["available"]:
        return _na(s)
    drift = s.get("drift_check") or {}
    volume = s.get("volume_check") or {}
    return (f"<p>Export {_e(s['export_id'])} at {_e(s['generated_at'])}: <code>{_e(s['manifest'])}</code>. "
            f"Drift check: {_e(drift.get('status'))}{' (forced)' if drift.get('forced') else ''}. "
            f"Volume check: {_e(volume.get('status'))}{' (forced)' if volume.get('forced') else ''}.</p>"
            + _table(["segment", "rows", "left out (no consent)", "destination", "consent"],
                     [[r["segment"], r["rows"], r["excluded_without_consent"], r["destination"], r["required_consent"]]
                      for r in s["segments"]], {1, 2}))


def _render_volume(s: dict) -> str:
    if not s["available"]:
        return _na(s)
    decision = s["decision"]
    cls = "hold" if decision["hold"] else "ok"
    rows = [[r["entity"], r["landed"], r["files"], r["median"], r["low"], r["high"], r["history"], r["status"]]
            for r in s["rows"]]
    return (f"<p>Rows landed under each entity's dt={_e(s['rows'][0]['as_of_date'])} partition against the median of "
            f"the previous {s['lookback']} nights; expected {s['min_ratio']}..{s['max_ratio']} x the median "
            f"({_e(s['source'])}).</p>"
            f'<p class="{cls}">{_e(decision["message"])}</p>'
            + _table(["entity", "landed", "files", "median", "low", "high", "nights", "status"], rows,
                     {1, 2, 3, 4, 5, 6}))


def _render_monitoring(s: dict) -> str:
    if not s["available"]:
        return _na(s)
    exports = s["exports"]
    cls = "hold" if exports["hold"] else "ok"
    rows = [[r["kind"], r["name"], r["psi"], r["status"], r["bins"], r["reference_rows"], r["current_rows"]]
            for r in s["rows"]]
    return (f"<p>PSI against the reference snapshot {_e(s['reference_date'])}; warn at {s['warn_threshold']}, "
            f"hold at {s['hold_threshold']}.</p>"
            f'<p class="{cls}">{_e(exports["message"])}</p>'
            + _table(["kind", "name", "PSI", "status", "bins", "reference rows", "current rows"], rows, {2, 4, 5, 6}))


def _words(sentence: str) -> str:
    """A summary sentence as HTML: escaped, with its `commands` as code."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", _e(sentence))


def _sentences(label: str, part: dict, css: str = "") -> str:
    """One labelled paragraph; several sentences (holds, models) become a short list, one per line."""
    cls = css if part.get("available") else "na"
    sentences = part.get("sentences") or [f"not available: {part.get('reason')}"]
    opening = (f'<p class="{cls}">' if cls else "<p>") + f"<b>{_e(label)}:</b> "
    if len(sentences) == 1:
        return opening + _words(sentences[0]) + "</p>"
    return opening + "</p><ul>" + "".join(f"<li>{_words(x)}</li>" for x in sentences) + "</ul>"


def render_summary(summary: dict) -> str:
    """The first section: the headline, then short sentences and one small table (segments)."""
    css = {"failed": "bad", "held": "hold", "attention": "", "unknown": "na", "ok": "ok"}.get(summary.get("status"), "")
    parts = [(f'<p class="{css}">' if css else "<p>") + f'<b>{_e(summary.get("headline"))}</b></p>']
    run = summary.get("run") or {}
    for f in [x for x in run.get("stages") or [] if x.get("status") == "failed"]:  # the failures come first
        parts.append(f'<p class="bad">Stage {_e(f["stage"])} failed: <code>{_e(f["error"])}</code>. '
                     f'What to do: {_words(f["do"])} (<code>{_e(f["runbook"])}</code>).</p>')
    parts.append(_sentences("What ran", {**run, "sentences": [run["overview"]]} if run.get("available") else run))
    holds = summary.get("holds") or {}
    parts.append(_sentences("Held and why", holds, "hold" if holds.get("held") else ""))
    segs = summary.get("segments") or {}
    parts.append(_sentences("Segments", segs))
    if segs.get("available"):
        def signed(v):
            return "" if v is None else f"{v:+,}" if v else "0"
        parts.append(_table(["segment", "members tonight", "last night", "change", "entered", "exited"],
                            [[r["segment"], r["members"], r["previous_members"], signed(r["delta"]),
                              r["entered"], r["exited"]] for r in segs["segments"]], {1, 2, 3, 4, 5}))
    parts.append(_sentences("Next-best actions", summary.get("next_best_action") or {}))
    models = summary.get("models") or {}
    parts.append(_sentences("Models", models, "bad" if any(m.get("passed_gates") is False
                                                             for m in models.get("models") or []) else ""))
    return "".join(parts)


SECTIONS = [
    ("stages", "Stage timings", _render_stages),
    ("layers", "Rows per layer", _render_layers),
    ("quarantine", "Quarantined rows", _render_quarantine),
    ("volume", "Volume check", _render_volume),
    ("dbt", "dbt tests", _render_dbt),
    ("models", "Models (@champion)", _render_models),
    ("scores", "Score distributions", _render_scores),
    ("segments", "Segments", _render_segments),
    ("exports", "Exports", _render_exports),
    ("monitoring", "Drift (PSI)", _render_monitoring),
]


def render_html(facts: dict) -> str:
    warnings = facts["warnings"]
    warn_html = ('<div class="warn"><b>Warnings</b><ul>' + "".join(f"<li>{_e(w)}</li>" for w in warnings)
                 + "</ul></div>") if warnings else '<p class="ok">No warnings.</p>'
    try:
        summary = render_summary(facts["summary"])
    except Exception as exc:  # like a section: the rest of the page stays
        summary = f'<p class="na">not available: could not render ({_e(exc.__class__.__name__)}: {_e(exc)})</p>'
    body = []
    for key, title, fn in SECTIONS:
        section = facts["sections"][key]
        try:
            content = fn(section)
        except Exception as exc:  # a rendering bug in one section still leaves the rest of the page
            content = f'<p class="na">not available: could not render ({_e(exc.__class__.__name__)}: {_e(exc)})</p>'
        body.append(f'<h2 id="{key}">{_e(title)}</h2>{content}')
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>c360 run report {_e(facts["date"])}'
            f"</title><style>{CSS}</style></head><body><h1>c360 nightly run report: {_e(facts['date'])}</h1>"
            f"<p>Generated {_e(facts['generated_at'])}.</p>"
            f'<h2 id="summary">Summary</h2>{summary}<h2 id="details">Details for engineers</h2>'
            f"{warn_html}{''.join(body)}</body></html>\n")
