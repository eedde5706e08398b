"""The segments page over HTTP, without a browser: /api/segments, the held-export sentence, downloads, the rule
editor's saving into segments.yml, and reading while another process holds the warehouse's write lock.

The warehouse is test_exports.py's: the dbt export-rows model over hand-made segment tables (seconds, no dbt run).
The browser tests (tests/test_ui_browser.py) use a dbt-built shop.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import duckdb
import pytest
import yaml
from fastapi.testclient import TestClient

from c360.exports import export_segments, read_manifest
from c360.report.stages import record_stage
from c360.segments import load_segments
from c360.storage import open_storage
from c360.ui.app import create_app
from c360.ui.rules import Draft, RuleRefused, edited_text, file_version, save_draft
from tests.test_exports import D1, D2, SEGMENTS, _record_psi, build_warehouse

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def ui(c360_env, tmp_path):
    build_warehouse(c360_env.warehouse_path)
    seg_file = tmp_path / "segments.yml"
    seg_file.write_text("# kept\n" + yaml.safe_dump({"version": 1, "segments": [s.as_dict() for s in SEGMENTS]},
                                                     sort_keys=False))
    return c360_env, seg_file


def client(settings, seg_file) -> TestClient:
    return TestClient(create_app(settings, seg_file, background=False))


def test_api_segments_lists_every_segment_with_its_size(ui):
    settings, seg_file = ui
    with client(settings, seg_file) as c:
        api = c.get("/api/segments").json()
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        sizes = dict(con.execute("SELECT segment, count(*) FROM marts.segment_members WHERE as_of_date = ? "
                                 "GROUP BY 1", [D2]).fetchall())
    assert api == [{"name": s.name, "as_of_date": D2.isoformat(), "size": sizes[s.name]} for s in SEGMENTS]


def test_the_page_says_why_tonights_export_was_held(ui):
    settings, seg_file = ui
    export_segments(D1, settings, segments=SEGMENTS)
    _record_psi(settings.warehouse_path, D2, 0.6)  # drift: the export of D2 refuses to run
    message = "Exports for 2025-06-02 are held back: drift in score churn_probability"
    record_stage(settings, D2, "export", 0.0, "skipped", note=message)
    with client(settings, seg_file) as c:
        page = c.get("/").text
    assert "Tonight&#39;s files are not published: the export was held back on 2025-06-02. Why: " + message in page
    assert 'class="status hold"' in page  # the drift panel shows the same decision, read from monitoring.psi
    assert "/download/" not in page  # nothing published for D2: no links to yesterday's files


def test_without_a_stage_record_the_hold_comes_from_the_checks(ui):
    settings, seg_file = ui
    _record_psi(settings.warehouse_path, D2, 0.6)
    with client(settings, seg_file) as c:
        page = c.get("/").text
    assert "the export of 2025-06-02 is held back. Why: " in page and "churn_probability" in page


def test_download_serves_the_manifest_file_and_refuses_a_changed_one(ui):
    settings, seg_file = ui
    manifest = export_segments(D2, settings, segments=SEGMENTS)
    entry = manifest["segments"]["loyal"]["files"]["parquet"]
    with client(settings, seg_file) as c:
        r = c.get(f"/download/{D2}/loyal/parquet")
        assert r.status_code == 200 and r.headers["x-content-sha256"] == entry["sha256"]
        import hashlib

        assert hashlib.sha256(r.content).hexdigest() == entry["sha256"]
        assert c.get(f"/download/{D2}/nosuch/csv").status_code == 404
        assert c.get(f"/download/{D2}/loyal/manifest").status_code == 404
        assert c.get(f"/download/{D1}/loyal/csv").status_code == 404  # D1 never exported
        # a file that no longer matches its manifest is not served
        path = Path(settings.export_uri) / f"dt={D2}" / entry["path"]
        path.write_bytes(path.read_bytes() + b"x")
        r = c.get(f"/download/{D2}/loyal/parquet")
        assert r.status_code == 409 and "reload" in r.text
    assert read_manifest(open_storage(settings.export_uri), D2)["segments"]["loyal"]["files"]["parquet"] == entry


def test_reads_while_another_process_writes_and_never_blocks_it(ui):
    """The nightly is DuckDB's single writer: the page answers while a writer holds the file, and a writer can open
    the file (no wait, no lock error) while the page is serving."""
    settings, seg_file = ui
    hold = textwrap.dedent("""
        import sys, duckdb
        con = duckdb.connect(sys.argv[1])
        con.execute("INSERT INTO marts.segment_members SELECT * FROM marts.segment_members WHERE segment = 'loyal'")
        print("holding", flush=True)
        sys.stdin.readline()
    """)
    writer = subprocess.Popen([sys.executable, "-c", hold, str(settings.warehouse_path)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline().strip() == "holding"
        with pytest.raises(duckdb.IOException, match="lock"):  # what a direct read-only open would run into
            duckdb.connect(str(settings.warehouse_path), read_only=True)
        with client(settings, seg_file) as c:
            # the copy holds what the writer committed (its WAL included): loyal's D2 rows were doubled
            assert {e["name"]: e["size"] for e in c.get("/api/segments").json()} == {"loyal": 8, "service": 2}
            assert c.get("/").status_code == 200
            writer.stdin.write("\n")
            writer.stdin.flush()
            writer.wait(timeout=30)
            # now the page has a copy open; a new writer must get the file at once (lock timeout 0)
            second = subprocess.run([sys.executable, "-c", "import sys, duckdb; duckdb.connect(sys.argv[1])"
                                     ".execute('CREATE TABLE marts.written_meanwhile AS SELECT 1 AS x')",
                                     str(settings.warehouse_path)], capture_output=True, text=True, timeout=60)
            assert second.returncode == 0, second.stderr
            # and the next copy sees the change (a page shows the warehouse as of its latest consistent state)
            with duckdb.connect(str(settings.warehouse_path)) as con:
                con.execute("DELETE FROM marts.segment_members WHERE segment = 'service' AND customer_id = 'c2'")
            c.app.state.ui.snapshots.min_interval = 0
            c.app.state.ui.refresh()
            assert {e["name"]: e["size"] for e in c.get("/api/segments").json()}["service"] == 1
    finally:
        writer.kill()


def test_rule_editor_preview_and_save_over_http(ui):
    settings, seg_file = ui
    before = seg_file.read_text()
    with client(settings, seg_file) as c:
        version = file_version(before)
        form = {"name": "big", "description": "Big ones.", "where": "value_decile >= 8; select 1",
                "required_consent": "marketing", "destination": "crm", "version": version}
        for action in ("preview", "save"):
            r = c.post(f"/rules/{action}", data=form)
            assert r.status_code == 422 and "refused" in r.text, action
        assert seg_file.read_text() == before
        r = c.post("/rules/save", data={**form, "where": "value_decile >= 8"})
        assert r.status_code == 200 and "Saved segment big" in r.text
    assert seg_file.read_text().startswith("# kept\n")
    assert {s.name: s.where for s in load_segments(seg_file)}["big"] == "value_decile >= 8"


# ------------------------------------------------------------------------------------------------ saving


def test_changing_a_segment_keeps_the_rest_of_the_file_byte_for_byte():
    text = (REPO / "segments.yml").read_text()
    new = edited_text(text, Draft("vip", "Top tenth: priority service.", "value_decile = 10 and orders_count >= 2",
                                  "none", "crm"))
    changed = [(a, b) for a, b in zip(text.splitlines(), new.splitlines(), strict=True) if a != b]
    assert [b.strip() for _, b in changed] == ['description: "Top tenth: priority service."',
                                               "where: value_decile = 10 and orders_count >= 2"]
    segs = {s.name: s for s in load_segments_text(new)}
    assert segs["vip"].columns == ("first_name", "last_name", "predicted_value_eur", "value_decile", "churn_decile")


def test_a_new_segment_lands_at_the_end_of_the_list_before_the_template():
    text = (REPO / "segments.yml").read_text()
    new = edited_text(text, Draft("lapsed", "Gone quiet # not a comment", "days_since_last_order > 200",
                                  "marketing", "crm"))
    assert new.startswith(text[: text.index("# One segment per top category")].rstrip("\n"))
    assert new.endswith(text[text.index("# One segment per top category"):])
    names = [s.name for s in load_segments_text(new)]
    assert names.index("lapsed") == names.index("cart_abandoners") + 1
    assert {s.name: s.description for s in load_segments_text(new)}["lapsed"] == "Gone quiet # not a comment"


def load_segments_text(text: str):
    from c360.segments import parse_segments

    return parse_segments(yaml.safe_load(text))


def test_save_refuses_stale_versions_generated_segments_and_bad_rules(tmp_path):
    seg_file = tmp_path / "segments.yml"
    seg_file.write_text((REPO / "segments.yml").read_text())
    before = seg_file.read_bytes()
    good = Draft("lapsed", "Gone quiet.", "days_since_last_order > 200", "marketing", "crm")
    with pytest.raises(RuleRefused, match="changed since the editor was opened"):
        save_draft(seg_file, good, "0" * 64, set())
    with pytest.raises(RuleRefused, match="per_category template"):
        save_draft(seg_file, Draft("affinity_fashion", "x", "orders_count > 1", "marketing", "ads"),
                   file_version(before.decode()), {"affinity_fashion"})
    for where in ("email like '%@x.com'", "exists (select 1)", "read_text('/etc/passwd') is not null", "x > 1)"):
        with pytest.raises(RuleRefused, match="refused"):
            save_draft(seg_file, Draft("lapsed", "Gone quiet.", where, "marketing", "crm"),
                       file_version(before.decode()), set())
    with pytest.raises(RuleRefused, match="not an identifier"):
        save_draft(seg_file, Draft("Lapsed!", "Gone quiet.", "orders_count > 1", "marketing", "crm"),
                   file_version(before.decode()), set())
    assert seg_file.read_bytes() == before
    mode = seg_file.stat().st_mode
    save_draft(seg_file, good, file_version(before.decode()), set())
    assert seg_file.stat().st_mode == mode and not list(tmp_path.glob(".segments.yml.*"))
    assert "lapsed" in {s.name for s in load_segments(seg_file)}


# ------------------------------------------------------------------------------------------------ the copy


def test_copies_wait_for_the_writes_to_stop_and_never_keep_a_torn_copy(tmp_path, monkeypatch):
    from c360.ui import snapshot as snapshot_mod
    from c360.ui.snapshot import SnapshotManager

    source = tmp_path / "w.duckdb"
    with duckdb.connect(str(source)) as con:
        con.execute("CREATE TABLE t AS SELECT 1 AS x")
    manager = SnapshotManager(source, tmp_path / "copies")
    first = manager.refresh()
    assert first.path.parent == tmp_path / "copies" / str(os.getpid())

    def count(snap) -> int:
        con = snap.connect()
        try:
            return con.execute("SELECT count(*) FROM t").fetchone()[0]
        finally:
            con.close()

    with duckdb.connect(str(source)) as con:
        con.execute("INSERT INTO t VALUES (2)")
    # the background refresher waits until the file looked the same twice
    assert manager.refresh(wait_for_quiet=True) is first and "being written" in manager.last_problem
    second = manager.refresh(wait_for_quiet=True)
    assert second is not first and count(second) == 2 and manager.last_problem is None
    # a file that changes while it is copied is not kept: the previous copy stays in use
    with duckdb.connect(str(source)) as con:
        con.execute("INSERT INTO t VALUES (3)")
    stamps = iter(range(10**6))
    monkeypatch.setattr(snapshot_mod, "_stamp", lambda path: ((next(stamps), 0), None))
    monkeypatch.setattr(snapshot_mod.time, "sleep", lambda s: None)
    assert manager.refresh() is second and "being written" in manager.last_problem
    assert count(second) == 2
    assert sorted(p.name for p in manager.folder.glob("*.duckdb")) == sorted({first.path.name, second.path.name})
    manager.close()
    assert not manager.folder.exists()


def test_copies_of_stopped_servers_are_removed(tmp_path):
    from c360.ui.snapshot import SnapshotManager

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    orphan = tmp_path / "copies" / gone.stdout.strip()
    orphan.mkdir(parents=True)
    (orphan / "warehouse-1.duckdb").write_bytes(b"x" * 100)
    SnapshotManager(tmp_path / "w.duckdb", tmp_path / "copies")
    assert not orphan.exists()
