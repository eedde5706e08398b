"""The nightly run report: `reports/D.html` (for people) and `reports/D.json` (the same facts, for tools).

`record_stage` / `timed_stage` append to the stage log the report reads (format in c360/pipeline/report/stages.py and
docs/report.md); `build_report` collects every section, tolerating missing inputs, and writes both files.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from c360.config import Settings, get_settings
from c360.pipeline.report.stages import read_stages, record_stage, stage_log_path, timed_stage

log = logging.getLogger(__name__)

__all__ = ["ReportPaths", "build_report", "read_stages", "record_stage", "report_paths", "stage_log_path",
           "timed_stage"]


@dataclass(frozen=True)
class ReportPaths:
    html: Path
    json: Path
    warnings: tuple[str, ...]
    headline: str = ""  # the summary's first sentence (docs/report.md#summary-the-first-section)


def report_paths(settings: Settings, day: date) -> tuple[Path, Path]:
    base = Path(settings.reports_dir)
    return base / f"{day.isoformat()}.html", base / f"{day.isoformat()}.json"


def build_report(day: date, settings: Settings | None = None) -> ReportPaths:
    """Collect the night's facts and write D.html and D.json under settings.reports_dir (atomically)."""
    from c360.pipeline.report.collect import collect
    from c360.pipeline.report.render import render_html
    from c360.storage import LocalStorage

    settings = settings or get_settings()
    facts = collect(settings, day)
    html_path, json_path = report_paths(settings, day)
    store = LocalStorage(settings.reports_dir)  # temp file + rename: a reader never sees half a report
    store.write_bytes(json_path.name, json.dumps(facts, indent=2, default=str).encode("utf-8"))
    store.write_bytes(html_path.name, render_html(facts).encode("utf-8"))
    for w in facts["warnings"]:
        log.warning("report %s: %s", day, w)
    return ReportPaths(html_path, json_path, tuple(facts["warnings"]), facts["summary"]["headline"])
