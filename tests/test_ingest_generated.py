"""Ingestion of a generated shop: every injected dirt row ends where the generator's manifest says, by file and line."""

from __future__ import annotations

from datetime import date, timedelta

import duckdb
import pandas as pd
import pytest

from c360.ingest.load import ingest
from c360.ingest.reconcile import reconcile
from c360dev.generate import DirtConfig, generate

START = date(2025, 10, 1)
DAYS = 21


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    import os

    from c360.config import get_settings

    root = tmp_path_factory.mktemp("gen")
    old = dict(os.environ)
    # dirt at 12x the demo's rates to exercise every kind: far above the quarantine-rate threshold, which is not
    # what this module tests (tests/reliability/test_ingest_faults.py does)
    os.environ.update({"C360_DATA_DIR": str(root / "data"), "C360_MAX_QUARANTINE_RATE": "1.0"})
    for var in ("LANDING_URI", "WAREHOUSE_PATH"):
        os.environ.pop(var, None)
    try:
        settings = get_settings()
        generate(out=settings.landing_uri, customers=600, days=DAYS, seed=11, start=START.isoformat(),
                 truth_dir=root / "truth", dirt=DirtConfig(scale=12.0))
        last = START + timedelta(days=DAYS - 1)
        result = ingest(last, settings)
        yield settings, root / "truth", result, last
    finally:
        os.environ.clear()
        os.environ.update(old)


@pytest.mark.reliability
def test_every_dirt_row_gets_its_expected_reason_at_its_line(loaded):
    settings, truth, _, _ = loaded
    dirt = pd.read_parquet(truth / "dirt.parquet")
    con = duckdb.connect(str(settings.warehouse_path), read_only=True)
    con.register("dirt", dirt)
    mismatches = con.execute(
        """
        SELECT d.kind, d.source_file, d.line_number, d.expected_reason, q.reason
        FROM dirt d
        LEFT JOIN raw.quarantine q ON q.source_file = d.source_file AND q.source_line = d.line_number
        WHERE d.expected_reason IS DISTINCT FROM q.reason
        """
    ).fetchall()
    assert mismatches == []
    # and nothing else was quarantined: clean rows stay clean
    assert con.execute("SELECT count(*) FROM raw.quarantine").fetchone()[0] == int(dirt.expected_reason.notna().sum())
    con.close()
    assert set(dirt.kind) >= {"duplicate_row", "resent_line", "missing_customer_id", "negative_quantity",
                              "unknown_currency", "future_timestamp", "test_order", "late_event", "malformed_record"}


@pytest.mark.reliability
def test_landed_equals_loaded_plus_quarantined(loaded):
    settings, _, result, last = loaded
    report = reconcile(settings, last)
    assert report["landed"] == report["loaded"] + report["quarantined"]
    assert report["landed"] == sum(e.landed for e in result.entities.values())


@pytest.mark.reliability
def test_late_events_and_resent_lines_are_loaded(loaded):
    settings, truth, _, _ = loaded
    dirt = pd.read_parquet(truth / "dirt.parquet")
    con = duckdb.connect(str(settings.warehouse_path), read_only=True)
    late = dirt[dirt.kind == "late_event"].event_id.tolist()
    got = con.execute(
        "SELECT count(*), count(*) FILTER (WHERE _dt > CAST(occurred_at AS DATE)) FROM raw.tracking_events "
        "WHERE event_id IN (SELECT unnest($1::VARCHAR[]))", [late]).fetchall()[0]
    assert got == (len(late), len(late))
    resent = dirt[dirt.kind == "resent_line"][["order_id", "line_id"]].drop_duplicates()
    con.register("resent", resent)
    versions = con.execute(
        "SELECT min(n) FROM (SELECT count(DISTINCT amount) n FROM raw.transactions t "
        "JOIN resent r ON t.order_id = r.order_id AND t.line_id = r.line_id GROUP BY t.order_id, t.line_id)"
    ).fetchone()[0]
    assert versions == 2  # the original and the re-sent version are both in raw; staging picks the latest
    con.close()
