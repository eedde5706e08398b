"""Faults and hostile input around the segments page (c360 ui): a writer holding the warehouse, a copy torn by writes,
an export file changed after its manifest, unsafe or forged rule-editor posts, foreign Host headers. Each asserts that
nothing the nightly or marketing relies on changed: segments.yml byte for byte, the manifest and its files, the
writer's access to the warehouse.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import duckdb
import pytest

from c360.marketing.exports import export_segments, read_manifest
from c360.marketing.segments import load_segments
from c360.marketing.ui.rules import Draft, RuleRefused, file_version, save_draft
from c360.storage import open_storage
from tests.test_exports import D1, D2, SEGMENTS
from tests.test_ui import client, form_token, make_ui

pytestmark = pytest.mark.reliability

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def ui(c360_env, tmp_path):
    return make_ui(c360_env, tmp_path)


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


def test_copies_wait_for_the_writes_to_stop_and_never_keep_a_torn_copy(tmp_path, monkeypatch):
    from c360.marketing.ui import snapshot as snapshot_mod
    from c360.marketing.ui.snapshot import SnapshotManager

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


def test_forged_posts_and_foreign_hosts_change_nothing(ui):
    settings, seg_file = ui
    before = seg_file.read_bytes()
    form = {"name": "big", "description": "Big ones.", "where": "value_decile >= 8", "required_consent": "marketing",
            "destination": "crm", "version": file_version(before.decode())}
    with client(settings, seg_file) as c:
        # another site posting a form to 127.0.0.1 knows the file (the repository's) but not the page's token
        for token in ("", "guessed"):
            r = c.post("/rules/save", data={**form, "token": token})
            assert r.status_code == 403 and "reload the rule editor" in r.text
        assert seg_file.read_bytes() == before
        # DNS rebinding: the same request under another host name is not answered at all
        r = c.post("/rules/save", data={**form, "token": form_token(c)}, headers={"host": "evil.example"})
        assert r.status_code == 400
        assert c.get("/api/segments", headers={"host": "evil.example:8050"}).status_code == 400
        assert seg_file.read_bytes() == before
        assert c.post("/rules/save", data={**form, "token": form_token(c)}).status_code == 200
    assert "big" in {s.name for s in load_segments(seg_file)}


def test_a_rule_the_warehouse_cannot_run_is_not_saved(ui):
    """Inside the language but a type error: saving it would stop the next nightly's dbt build."""
    settings, seg_file = ui
    before = seg_file.read_bytes()
    form = {"name": "typo", "description": "A typo.", "where": "lower(value_decile) = 'x'",
            "required_consent": "marketing", "destination": "crm", "version": file_version(before.decode())}
    with client(settings, seg_file) as c:
        r = c.post("/rules/save", data={**form, "token": form_token(c)})
        assert r.status_code == 422 and "rule refused by the warehouse" in r.text and "typo" in r.text
        assert c.post("/rules/preview", data={**form, "token": form_token(c)}).status_code == 422
    assert seg_file.read_bytes() == before
