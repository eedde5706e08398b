"""The segments page as a FastAPI app: server-rendered HTML (Jinja2), no JavaScript or files fetched at run time.

Routes: `/` the segments, `/api/segments` JSON, `/download/{date}/{segment}/{kind}` tonight's files (checked against
the manifest's sha256 before they are sent), `/rules` the rule editor (preview, save).
"""

from __future__ import annotations

import logging
import secrets
import threading
from datetime import date
from pathlib import Path
from typing import Any

from c360.config import Settings, get_settings
from c360.marketing.segments import (
    CONSENTS,
    DEFAULT_SEGMENTS_FILE,
    DESTINATIONS,
    Segment,
    SegmentConfigError,
    load_segments,
)
from c360.marketing.ui.snapshot import SnapshotManager

log = logging.getLogger(__name__)

TEMPLATES = Path(__file__).parent / "templates"
REFRESH_SECONDS = 30.0  # how often the background thread looks for a newer warehouse file
STALE_FORM = ("this form was not opened from this page's server (or the server restarted since): reload the "
              "rule editor and submit again")
LOCAL_HOSTS = ("127.0.0.1", "localhost")


def _env():
    import jinja2

    from c360.marketing.ui.svg import trend_svg

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["trend_svg"] = trend_svg
    env.filters["thousands"] = lambda n: "-" if n is None else f"{n:,}"
    return env


class UiState:
    """What the routes share: settings, the segments file and the warehouse copy."""

    def __init__(self, settings: Settings, segments_file: Path):
        self.settings = settings
        self.segments_file = Path(segments_file)
        self.snapshots = SnapshotManager(settings.warehouse_path, settings.data_dir / "ui" / "snapshots",
                                         spark=settings if settings.warehouse == "spark" else None)
        self._stop = threading.Event()
        self._facts_lock = threading.Lock()
        self._facts: tuple | None = None

    def segments(self) -> tuple[list[Segment], set[str], str | None]:
        """(segments, names generated from the per_category template, the file's problem if it is invalid)."""
        import yaml

        from c360.marketing.ui.rules import explicit_names

        try:
            segments = load_segments(self.segments_file)
        except SegmentConfigError as exc:
            return [], set(), str(exc)
        doc = yaml.safe_load(self.segments_file.read_text(encoding="utf-8")) or {}
        explicit = set(explicit_names(doc))
        return segments, {s.name for s in segments if s.name not in explicit}, None

    def snapshot(self):
        snap = self.snapshots.current(refresh=False)
        return snap if snap is not None else self.snapshots.refresh()

    def warehouse_facts(self, snap):
        """The page's warehouse facts of a copy, computed once per copy (a copy never changes)."""
        from c360.marketing.ui.facts import read_warehouse

        with self._facts_lock:
            cached = self._facts
            if cached is not None and cached[0] == snap.path:
                return cached[1]
            con = snap.connect()
            try:
                facts = read_warehouse(con, self.settings, self.settings.ui_trend_nights)
            finally:
                con.close()
            self._facts = (snap.path, facts)
            return facts

    def refresh(self, *, wait_for_quiet: bool = False) -> None:
        """A new copy when the warehouse changed, and its facts computed before a page asks for them."""
        snap = self.snapshots.refresh(wait_for_quiet=wait_for_quiet)
        if snap is not None:
            self.warehouse_facts(snap)

    def start_refresher(self) -> None:
        """Copy the warehouse in the background, so a page request never waits for a copy (except the first)."""
        def loop():
            while not self._stop.wait(REFRESH_SECONDS):
                try:
                    self.refresh(wait_for_quiet=True)
                except Exception:  # noqa: BLE001 - logged; the page keeps the previous copy
                    log.exception("warehouse copy failed")

        threading.Thread(target=loop, name="c360-ui-snapshot", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()


def _shown(path: Path) -> str:
    """The path as marketing knows it: relative to the repository when it is the repository's segments.yml."""
    from c360.config import PROJECT_ROOT

    return str(path.resolve().relative_to(PROJECT_ROOT)) if path.resolve().is_relative_to(PROJECT_ROOT) else str(path)


def create_app(settings: Settings | None = None, segments_file: Path | None = None, *, background: bool = True):
    from contextlib import asynccontextmanager

    from fastapi import FastAPI, Form, HTTPException, Request
    from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response

    state = UiState(settings or get_settings(), segments_file or DEFAULT_SEGMENTS_FILE)
    env = _env()

    @asynccontextmanager
    async def lifespan(_app):
        state.refresh()  # first copy (and its facts) before the first request
        if background:
            state.start_refresher()
        yield
        state.stop()
        state.snapshots.close()

    app = FastAPI(title="c360 segments", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.ui = state
    # The editor's forms carry this token: another web site open in the same browser can post a form to
    # 127.0.0.1 (no preflight for a plain form), but cannot read the page to learn the token.
    token = secrets.token_urlsafe(24)

    @app.middleware("http")
    async def local_hosts_only(request: Request, call_next):
        # DNS rebinding: a page of evil.example whose name resolves to 127.0.0.1 would be same-origin with us;
        # its requests carry its own Host header, so only the loopback names are answered.
        host = (request.headers.get("host") or "").rsplit(":", 1)[0].strip("[]").lower()
        if host not in LOCAL_HOSTS:
            return PlainTextResponse(f"host {host!r} refused: open the page as http://127.0.0.1:<port>/",
                                     status_code=400)
        return await call_next(request)

    def render(name: str, status: int = 200, **context: Any) -> HTMLResponse:
        snap = state.snapshots.current(refresh=False)
        context.setdefault("snapshot_taken_at", snap.taken_at if snap else None)
        context.setdefault("snapshot_problem", state.snapshots.last_problem)
        return HTMLResponse(env.get_template(name).render(**context), status_code=status)

    # Plain `def` routes: FastAPI runs them in its thread pool, so DuckDB and file reads never block the event loop.
    @app.get("/", response_class=HTMLResponse)
    def segments_page():
        from c360.marketing.ui.facts import compose_page

        segments, generated, problem = state.segments()
        snap = state.snapshot()
        if problem or snap is None:
            return render("segments.html", page=None, problem=problem or state.snapshots.last_problem)
        page = compose_page(state.warehouse_facts(snap), state.settings, segments, generated)
        return render("segments.html", page=page, problem=None)

    @app.get("/api/segments")
    def api_segments():
        from c360.marketing.ui.facts import api_sizes

        segments, _, problem = state.segments()
        if problem:
            return JSONResponse({"error": problem}, status_code=500)
        snap = state.snapshot()
        if snap is None:
            return [{"name": s.name, "as_of_date": None, "size": None} for s in segments]
        con = snap.connect()
        try:
            return api_sizes(con, segments)
        finally:
            con.close()

    @app.get("/download/{day}/{segment}/{kind}")
    def download(day: str, segment: str, kind: str):
        from c360.marketing.ui.facts import FILE_KINDS, read_manifest_quietly
        from c360.storage import open_storage, sha256_bytes

        try:
            as_of = date.fromisoformat(day)
        except ValueError:
            raise HTTPException(404, f"{day!r} is not a date (YYYY-MM-DD)") from None
        if kind not in FILE_KINDS:
            raise HTTPException(404, f"unknown file kind {kind!r}; one of {', '.join(FILE_KINDS)}")
        manifest, problem = read_manifest_quietly(state.settings, as_of)
        if manifest is None:
            raise HTTPException(404, problem or f"no export manifest for {as_of}: that night was not exported")
        entry = (manifest["segments"].get(segment) or {}).get("files", {}).get(kind)
        if entry is None:
            raise HTTPException(404, f"the manifest of {as_of} lists no {kind} file for segment {segment!r}")
        # Only paths the manifest names are read; the storage layer refuses anything leaving the export root.
        data = open_storage(state.settings.export_uri, state.settings.s3_endpoint_url).read_bytes(
            f"dt={as_of.isoformat()}/{entry['path']}")
        if sha256_bytes(data) != entry["sha256"]:
            raise HTTPException(409, f"{entry['path']} does not match its manifest (sha256): an export or erasure "
                                     "is rewriting it; reload the page and download again")
        name = entry["path"].rsplit("/", 1)[-1]
        media = "text/csv" if name.endswith(".csv") else "application/octet-stream"
        return Response(data, media_type=media, headers={
            "Content-Disposition": f'attachment; filename="{as_of.isoformat()}-{name}"',
            "X-Content-SHA256": entry["sha256"]})

    # ------------------------------------------------------------------------------------------ rule editor

    def editor(draft=None, *, status: int = 200, **context: Any) -> HTMLResponse:
        from c360.marketing.ui.rules import Draft, file_version

        segments, generated, problem = state.segments()
        text = state.segments_file.read_text(encoding="utf-8")
        draft = draft or Draft("", "", "", "marketing", "crm")
        return render("rules.html", status=status, draft=draft, segments=segments, generated=generated, token=token,
                      file_problem=problem, version=context.pop("version", None) or file_version(text),
                      consents=list(CONSENTS), destinations=list(DESTINATIONS),
                      segments_file=_shown(state.segments_file), **{"preview": None, "refusal": None,
                                                                 "saved": None, **context})

    @app.get("/rules", response_class=HTMLResponse)
    def rules_page(segment: str | None = None):
        from c360.marketing.ui.rules import Draft

        segments, _, _ = state.segments()
        seg = next((s for s in segments if s.name == segment), None)
        draft = Draft(seg.name, seg.description, seg.where, seg.required_consent, seg.destination) if seg else None
        return editor(draft)

    def draft_of(name: str, description: str, where: str, required_consent: str, destination: str):
        from c360.marketing.ui.rules import Draft

        return Draft(name.strip(), description.strip(), where.strip(), required_consent.strip(), destination.strip())

    @app.post("/rules/preview", response_class=HTMLResponse)
    def rules_preview(name: str = Form(""), description: str = Form(""), where: str = Form(""),
                      required_consent: str = Form("marketing"), destination: str = Form("crm"),
                      version: str = Form(""), form_token: str = Form("", alias="token")):
        from c360.marketing.segments import latest_segment_date
        from c360.marketing.ui.rules import RuleRefused, preview_size

        draft = draft_of(name, description, where, required_consent, destination)
        if not secrets.compare_digest(form_token, token):
            return editor(draft, status=403, refusal=STALE_FORM, version=version)
        snap = state.snapshot()
        if snap is None:
            return editor(draft, status=503, refusal=state.snapshots.last_problem, version=version)
        con = snap.connect()
        try:
            day = latest_segment_date(con)
            if day is None:
                return editor(draft, status=409, refusal="no night has been built yet: run the nightly first",
                              version=version)
            result = preview_size(con, draft, day)
        except RuleRefused as exc:
            return editor(draft, status=422, refusal=str(exc), version=version)
        finally:
            con.close()
        return editor(draft, preview=result, version=version)

    @app.post("/rules/save", response_class=HTMLResponse)
    def rules_save(name: str = Form(""), description: str = Form(""), where: str = Form(""),
                   required_consent: str = Form("marketing"), destination: str = Form("crm"),
                   version: str = Form(""), form_token: str = Form("", alias="token")):
        from c360.marketing.ui.rules import RuleRefused, bind_draft, save_draft

        draft = draft_of(name, description, where, required_consent, destination)
        if not secrets.compare_digest(form_token, token):
            return editor(draft, status=403, refusal=STALE_FORM, version=version)
        _, generated, _ = state.segments()
        try:
            bind_draft(state.snapshot(), draft)
            new_version = save_draft(state.segments_file, draft, version, generated)
        except RuleRefused as exc:
            return editor(draft, status=422, refusal=str(exc), version=version)
        log.info("segments page: saved segment %r to %s", draft.name, state.segments_file)
        return editor(draft, saved=(f"Saved segment {draft.name} to {_shown(state.segments_file)}. The next nightly builds "
                                    "it; its size and files appear here after that night."), version=new_version)

    return app
