"""The generator's tracking in each vendor's format (issue #18, deliver 4): the same small shop landed in the own
format and in a vendor's (or as a migration between two) must give the same canonical events once ingested, and the
same sessions and customer features once dbt has built them. What differs is only what the vendor owns: its event
ids and cookies (a fixed function of the canonical ones), Segment's missing browser, vendor_extra."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import duckdb
import pytest

from c360.config import get_settings
from c360.ingest.load import ingest
from c360dev.generate import generate
from c360dev.generate.vendors import VENDORS, TrackingFormat, from_canonical, source_of, vendor_line
from tests import dbt_testkit as kit

START, DAYS, CUSTOMERS, SEED = date(2026, 3, 1), 6, 150, 11
MIGRATION = "ga4>snowplow@2026-03-04+1"  # GA4 lands dt 1-4, Snowplow dt 3-6
COLUMNS = ("event_id, event_type, occurred_at, anonymous_id, customer_id, page_url, product_id, search_query, "
           "order_id, quantity, device_type, os, browser, referrer, utm_source, utm_medium, utm_campaign, _dt")


def _land_and_ingest(root: Path, monkeypatch, fmt: str) -> tuple[list[tuple], dict]:
    """Generate the shop in `fmt` under root, ingest every day; raw tracking rows and the tracking ingest counts."""
    kit.configure_env(monkeypatch, root)
    monkeypatch.setenv("C360_TRACKING_SOURCES", TrackingFormat.parse(fmt).tracking_sources())
    settings = get_settings()
    generate(out=settings.landing_uri, customers=CUSTOMERS, days=DAYS, seed=SEED, start=START.isoformat(),
             truth_dir=root / "truth", tracking_format=fmt)
    counts = {"landed": 0, "loaded": 0, "quarantined": 0, "reasons": {}}
    for i in range(DAYS):
        t = ingest(START + timedelta(days=i), settings).entities["tracking"]
        counts["landed"] += t.landed
        counts["loaded"] += t.loaded
        counts["quarantined"] += t.quarantined
        for reason, n in t.reasons.items():
            counts["reasons"][reason] = counts["reasons"].get(reason, 0) + n
    con = duckdb.connect(str(settings.warehouse_path), read_only=True)
    try:
        rows = con.execute(f"SELECT {COLUMNS} FROM raw.tracking_events").fetchall()
    finally:
        con.close()
    return rows, counts


def _vendor_ids(landing: Path, vendor: str) -> tuple[dict, dict]:
    """canonical event id -> the vendor's, canonical cookie -> the vendor's, from the canonical landed lines."""
    events, cookies = {}, {}
    for f in sorted(landing.glob("tracking/dt=*/*.jsonl.gz")):
        for line in gzip.decompress(f.read_bytes()).decode().splitlines():
            try:
                ev = from_canonical(json.loads(line))
            except ValueError:
                continue  # the generator's truncated lines: malformed in every format
            _, vid, anon, _, _ = vendor_line(vendor, ev, ev.bundle)
            events[ev.key], cookies[ev.cookie] = vid, anon
    return events, cookies


def _as_vendor(rows: list[tuple], vendor: str, events: dict, cookies: dict) -> list[tuple]:
    out = []
    for r in rows:
        r = list(r)
        r[0], r[3] = events[r[0]], cookies[r[3]]
        if source_of(vendor) in ("segment", "rudderstack"):
            r[12] = None  # Segment sends no parsed browser (docs/tracking_vendors.md)
        out.append(tuple(r))
    return sorted(out, key=repr)


@pytest.fixture(scope="module")
def canonical(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    root = tmp_path_factory.mktemp("canonical")
    try:
        rows, counts = _land_and_ingest(root, mp, "canonical")
    finally:
        mp.undo()
    assert counts["loaded"] > 300 and counts["quarantined"] > 0  # a real shop, dirt included
    return root, rows, counts


@pytest.mark.parametrize("vendor", VENDORS)
def test_a_vendor_format_ingests_to_the_same_canonical_events(canonical, vendor, tmp_path, monkeypatch):
    root, rows, counts = canonical
    got, got_counts = _land_and_ingest(tmp_path, monkeypatch, vendor)
    landing = Path(get_settings().landing_uri)
    folder = source_of(vendor)
    assert {p.parent.parent.name for p in landing.glob("tracking/*/dt=*/*")} == {folder}
    events, cookies = _vendor_ids(root / "data" / "landing", vendor)
    assert sorted(got, key=repr) == _as_vendor(rows, vendor, events, cookies)
    # every landed line is loaded or quarantined, for the same reasons (duplicates, late, truncated lines...)
    assert got_counts == counts


def test_a_migration_lands_both_tags_on_the_overlap_days_and_the_events_once_each(canonical, tmp_path, monkeypatch):
    root, rows, counts = canonical
    tf = TrackingFormat.parse(MIGRATION)
    got, got_counts = _land_and_ingest(tmp_path, monkeypatch, MIGRATION)
    expected = []
    for vendor in (tf.fmt, tf.new):
        events, cookies = _vendor_ids(root / "data" / "landing", vendor)
        expected += _as_vendor([r for r in rows if vendor in tf.writers(r[-1])], vendor, events, cookies)
    assert sorted(got, key=repr) == sorted(expected, key=repr)
    landing = Path(get_settings().landing_uri)
    days = {v: sorted(p.parent.name for p in landing.glob(f"tracking/{v}/dt=*/*")) for v in ("ga4", "snowplow")}
    assert days == {"ga4": [f"dt=2026-03-0{d}" for d in (1, 2, 3, 4)], "snowplow": [f"dt=2026-03-0{d}" for d in (3, 4, 5, 6)]}
    assert got_counts["landed"] == len(expected) + got_counts["quarantined"]


def _build(root: Path, monkeypatch, fmt: str) -> tuple[list, list, list]:
    """The shop in `fmt`, ingested and built by dbt on its last day: sessions, their boundaries, customer features."""
    from c360.pipeline import transform

    _land_and_ingest(root, monkeypatch, fmt)
    settings = get_settings()
    last = START + timedelta(days=DAYS - 1)
    transform.run_dbt([*kit.BUILD_MODELS, "--select", "fx_rates +fct_sessions +customer_features"], last, settings)
    con = duckdb.connect(str(settings.warehouse_path), read_only=True)
    try:
        sessions = con.execute("SELECT session_date, count(*), sum(events_count), sum(cart_adds), "
                               "sum(has_purchase::int) FROM marts.fct_sessions GROUP BY 1 ORDER BY 1").fetchall()
        spans = con.execute("SELECT session_start_at, session_end_at FROM marts.fct_sessions").fetchall()
        features = con.execute("SELECT * FROM feature_store.customer_features ORDER BY customer_id").fetchall()
        names = [d[0] for d in con.description]
        tracking = {d[0] for d in con.execute("SELECT * FROM feature_store_work.fs_customer_tracking_asof LIMIT 0")
                    .description} & set(names) - {"customer_id", "as_of_date"}
    finally:
        con.close()
    return sessions, spans, [dict(zip(names, f, strict=True)) for f in features], tracking


@pytest.mark.integration
def test_dbt_gives_the_same_sessions_and_customer_features_from_a_vendor_and_a_migration(tmp_path, monkeypatch):
    sessions, spans, features, tracking = _build(tmp_path / "canonical", monkeypatch, "canonical")
    assert sum(s[1] for s in sessions) > 20 and len(features) > 50
    # one vendor: exactly the same sessions and features
    got_sessions, _, got_features, _ = _build(tmp_path / "snowplow", monkeypatch, "snowplow")
    assert got_sessions == sessions
    assert got_features == features

    # a migration (the default overlap, 3 days, covers the generator's late events)
    fmt = "segment>snowplow@2026-03-04"
    got_sessions, _, got_features, _ = _build(tmp_path / "migration", monkeypatch, fmt)
    # every visit once; one spanning the cut-over instant is split in two (docs/tracking_vendors.md)
    cut = TrackingFormat.parse(fmt).cutover
    cut_at = datetime(cut.year, cut.month, cut.day, tzinfo=UTC)
    split = sum(1 for start, end in spans if start < cut_at <= end)
    assert sum(s[1] for s in got_sessions) == sum(s[1] for s in sessions) + split
    if not split:
        assert got_sessions == sessions
    # The new tag's cookies are new: a device known from a login under the old tag is anonymous again until the
    # customer logs in under the new one, so its sessions are not the customer's. Only tracking features of such
    # customers may differ, and only by fewer sessions; everything else is the same.
    assert len(got_features) == len(features)
    counts = {k for k in tracking if "sessions" in k or "cart" in k}
    assert {"sessions_30d", "cart_adds_30d"} <= counts
    for f, g in zip(features, got_features, strict=True):
        assert {k: v for k, v in f.items() if k not in tracking} == {k: v for k, v in g.items() if k not in tracking}
        assert all((g[k] or 0) <= (f[k] or 0) for k in counts), f["customer_id"]


@pytest.mark.parametrize("value, message", [
    ("segmnt", "tracking format 'segmnt': expected one of canonical, snowplow"),
    ("segment>snowplow@2026-13-01", "OLD>NEW@YYYY-MM-DD"),
    ("snowplow>snowplow_json@2026-03-01", "land in the same folder (snowplow)"),
    ("segment>ga4@2026-03-01+x", "OLD>NEW@YYYY-MM-DD"),
])
def test_a_malformed_tracking_format_is_refused_naming_it(value, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        TrackingFormat.parse(value)


def test_the_setting_is_checked_at_start_up(monkeypatch):
    monkeypatch.setenv("C360_GENERATE_TRACKING_FORMAT", "segment>snowplw@2026-03-15")
    with pytest.raises(ValueError, match="C360_GENERATE_TRACKING_FORMAT='segment>snowplw@2026-03-15' must be"):
        get_settings()
    monkeypatch.setenv("C360_GENERATE_TRACKING_FORMAT", "Segment>Snowplow@2026-03-15+2")
    assert get_settings().generate_tracking_format == "segment>snowplow@2026-03-15+2"
    assert TrackingFormat.parse(get_settings().generate_tracking_format).overlap_days == 2


def test_a_migration_demo_needs_its_cut_over_before_anything_is_generated(tmp_path, monkeypatch):
    import argparse

    from c360.cli import nightly

    kit.configure_env(monkeypatch, tmp_path)
    monkeypatch.setenv("LANDING_URI", str(tmp_path / "landing"))
    monkeypatch.delenv("C360_TRACKING_SOURCES", raising=False)
    parser = argparse.ArgumentParser()
    nightly.add_arguments(parser)
    args = parser.parse_args(["--tracking-format", "segment>snowplow@2025-10-20", "--days", "2", "--customers", "5"])
    with pytest.raises(SystemExit, match='C360_TRACKING_SOURCES="segment:..2025-10-20,snowplow:2025-10-20.."'):
        nightly.run(args)
    assert not (tmp_path / "landing").exists() or not any((tmp_path / "landing").iterdir())
