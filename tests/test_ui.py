"""The segments page over HTTP, without a browser: /api/segments, the held-export sentence, downloads, the rule
editor's saving into segments.yml, and reading while another process holds the warehouse's write lock.

The warehouse is test_exports.py's: the dbt export-rows model over hand-made segment tables (seconds, no dbt run).
The browser tests (tests/test_ui_browser.py) use a dbt-built shop.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
import yaml
from fastapi.testclient import TestClient

from c360.marketing.exports import export_segments
from c360.marketing.segments import load_segments
from c360.marketing.ui.app import create_app
from c360.marketing.ui.rules import Draft, edited_text, file_version
from c360.pipeline.report.stages import record_stage
from tests.test_exports import D1, D2, SEGMENTS, _record_psi, build_warehouse

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def ui(c360_env, tmp_path):
    return make_ui(c360_env, tmp_path)


def make_ui(c360_env, tmp_path):
    """test_exports.py's warehouse (two nights) and a segments.yml with its segments (and a comment to keep)."""
    build_warehouse(c360_env.warehouse_path)
    seg_file = tmp_path / "segments.yml"
    seg_file.write_text("# kept\n" + yaml.safe_dump({"version": 1, "segments": [s.as_dict() for s in SEGMENTS]},
                                                     sort_keys=False))
    return c360_env, seg_file


def client(settings, seg_file) -> TestClient:
    # the page answers only to loopback host names (DNS rebinding): talk to it as a browser on 127.0.0.1 does
    return TestClient(create_app(settings, seg_file, background=False), base_url="http://127.0.0.1:8050")


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


def test_member_preview_shows_the_churn_models_reasons(ui):
    """Each previewed member carries the night's top churn reasons from marts.customer_scores, in rank order; a
    member without reasons (or a warehouse without the columns) shows none, and the email masking is unchanged."""
    settings, seg_file = ui
    with client(settings, seg_file) as c:
        before = c.get("/").text
    assert "churn risk:" not in before  # no marts.customer_scores yet: the preview still renders
    with duckdb.connect(str(settings.warehouse_path)) as con:
        con.execute("""CREATE TABLE marts.customer_scores (as_of_date DATE, customer_id VARCHAR,
                           churn_reason_1 VARCHAR, churn_reason_2 VARCHAR, churn_reason_3 VARCHAR)""")
        con.executemany("INSERT INTO marts.customer_scores VALUES (?, ?, ?, ?, ?)", [
            (D2, "c1", "days_since_last_order high", "country = DE", None),
            (D1, "c2", "sessions_30d low", None, None),        # another night: not tonight's reason
            (D2, "c2", "silence_ratio high", "orders_count low", "return_rate high"),
        ])
    with client(settings, seg_file) as c:
        page = c.get("/").text
    items = re.findall(r"<li>(.*?)</li>", page, flags=re.S)
    c1 = [i for i in items if i.strip().startswith("c1 ")]
    c2 = [i for i in items if i.strip().startswith("c2 ")]
    c4 = [i for i in items if i.strip().startswith("c4 ")]
    assert c1 and all("churn risk: days_since_last_order high, country = DE" in i for i in c1)
    assert c2 and all("churn risk: silence_ratio high, orders_count low, return_rate high" in i for i in c2)
    assert all("sessions_30d" not in i for i in c2)
    assert c4 and all("churn risk:" not in i for i in c4)
    assert all("c2@example.com" not in i for i in c2)  # c2 has no consent: still masked


def form_token(c) -> str:
    return re.search(r'name="token" value="([^"]+)"', c.get("/rules").text).group(1)


def test_rule_editor_preview_and_save_over_http(ui):
    settings, seg_file = ui
    before = seg_file.read_text()
    with client(settings, seg_file) as c:
        version = file_version(before)
        form = {"name": "big", "description": "Big ones.", "where": "value_decile >= 8; select 1",
                "required_consent": "marketing", "destination": "crm", "version": version, "token": form_token(c)}
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
    from c360.marketing.segments import parse_segments

    return parse_segments(yaml.safe_load(text))


# ------------------------------------------------------------------------------------------------ the copy


def test_copies_of_stopped_servers_are_removed(tmp_path):
    from c360.marketing.ui.snapshot import SnapshotManager

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    orphan = tmp_path / "copies" / gone.stdout.strip()
    orphan.mkdir(parents=True)
    (orphan / "warehouse-1.duckdb").write_bytes(b"x" * 100)
    SnapshotManager(tmp_path / "w.duckdb", tmp_path / "copies")
    assert not orphan.exists()


def test_before_the_first_night_the_page_says_what_to_do(c360_env, tmp_path):
    seg_file = tmp_path / "segments.yml"
    seg_file.write_text(yaml.safe_dump({"segments": [s.as_dict() for s in SEGMENTS]}))
    with client(c360_env, seg_file) as c:  # no warehouse file at all
        r = c.get("/")
        assert r.status_code == 200 and "no warehouse at" in r.text and "run the nightly" in r.text
        assert c.get("/api/segments").json() == [{"name": s.name, "as_of_date": None, "size": None} for s in SEGMENTS]
    c360_env.warehouse_path.parent.mkdir(parents=True)
    with duckdb.connect(str(c360_env.warehouse_path)) as con:  # a warehouse without segment marts yet
        con.execute("CREATE SCHEMA raw; CREATE TABLE raw.x AS SELECT 1 AS x")
    with client(c360_env, seg_file) as c:
        r = c.get("/")
        assert r.status_code == 200 and "No segments have been built yet: run the nightly." in r.text
        assert c.get("/api/segments").json() == [{"name": s.name, "as_of_date": None, "size": None} for s in SEGMENTS]


def test_an_invalid_segments_file_is_named_on_the_page(ui):
    settings, seg_file = ui
    seg_file.write_text(seg_file.read_text().replace("value_decile >= 8", "value_decile >= 8 union select 1"))
    with client(settings, seg_file) as c:
        r = c.get("/")
        assert r.status_code == 200 and "is invalid" in r.text and "union" in r.text and str(seg_file) in r.text
        assert "is invalid" in c.get("/api/segments").json()["error"]


def test_first_paint_bench_warehouse_holds_what_the_page_shows(tmp_path):
    """bench/ui_first_paint.py times the page and takes the docs' screenshots on a synthetic warehouse: it must hold
    every fact the page shows, the churn reasons of the member preview included, or the figures and screenshots
    describe a smaller page than the real one."""
    from datetime import date

    from bench.ui_first_paint import build
    from c360.marketing.ui.facts import api_sizes, member_preview

    warehouse = tmp_path / "warehouse.duckdb"
    names = build(warehouse, customers=400, nights=3, last=date(2026, 11, 20))
    with duckdb.connect(str(warehouse), read_only=True) as con:
        preview = member_preview(con, date(2026, 11, 20))
        sizes = {r["name"]: r["size"] for r in api_sizes(con, load_segments())}
    assert sorted(preview) == sorted(n for n in names if sizes[n])
    members = [m for rows in preview.values() for m in rows]
    assert members and all(1 <= len(m["churn_reasons"]) <= 3 for m in members)
    assert any(m["email"] is None for m in members) and any(m["email"] for m in members)  # masked and shown
