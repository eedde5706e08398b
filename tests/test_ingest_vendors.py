"""Tracking from vendors (issue #18): Snowplow (TSV, JSON), Segment, RudderStack and GA4 files land under
tracking/<vendor>/dt=D/ and become canonical rows of raw.tracking_events, with the vendor's unmapped fields in
vendor_extra, unknown events kept with their raw name, duplicates and bots quarantined."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, date

import duckdb
import pytest

from c360.ingest.load import ingest
from c360.ingest.reconcile import reconcile
from c360.storage import LocalStorage
from c360dev.generate.vendors import VENDORS, encode, journeys, landing_key

D = date(2026, 3, 10)
CHECKED = ("event_type", "occurred_at", "anonymous_id", "customer_id", "product_id", "quantity", "order_id",
           "search_query", "vendor_event_name")


def q(settings, sql, params=None):
    con = duckdb.connect(str(settings.warehouse_path), read_only=True)
    try:
        return con.execute(sql, params or []).fetchall()
    finally:
        con.close()


def land(settings, vendor, lines, day=D, name="part-0"):
    key = landing_key(vendor, day, name)
    LocalStorage(settings.landing_uri).write_bytes(key, ("\n".join(lines) + "\n").encode())
    return key


@pytest.mark.parametrize("vendor", VENDORS)
def test_every_vendor_event_lands_as_its_canonical_row(c360_env, vendor):
    events = journeys(D, visitors=30)
    lines, truth = encode(vendor, events)
    assert len(lines) >= 300  # a few hundred events per vendor
    key = land(c360_env, vendor, lines)

    t = ingest(D, c360_env, ["tracking"]).entities["tracking"]

    outcomes = Counter(e.outcome for e in truth)
    assert (t.landed, t.loaded, t.quarantined) == (len(lines), outcomes["loaded"], len(lines) - outcomes["loaded"])
    quarantined = dict(q(c360_env, "SELECT source_line, reason FROM raw.quarantine WHERE source_file = ?", [key]))
    assert quarantined == {e.line: e.outcome for e in truth if e.outcome != "loaded"}
    assert outcomes["duplicate_row"] >= 3
    assert (outcomes["bot_traffic"] > 0) == vendor.startswith("snowplow")

    cols = ", ".join(("event_id", "_source_line", "vendor", *CHECKED))
    got = {r[0]: r for r in q(c360_env, f"SELECT {cols} FROM raw.tracking_events")}
    expected = [e for e in truth if e.outcome == "loaded"]
    assert len(got) == len(expected)
    folder = "snowplow" if vendor.startswith("snowplow") else vendor
    for e in expected:
        row = got[e.row["event_id"]]
        assert row[1] == e.line and row[2] == folder
        actual = dict(zip(CHECKED, row[3:], strict=True))
        actual["occurred_at"] = actual["occurred_at"].astimezone(UTC)
        assert actual == {c: e.row[c] for c in CHECKED}, f"line {e.line}"
    # every canonical event type arrives, and the vendors' unknown events are kept, named and counted
    types = dict(q(c360_env, "SELECT event_type, count(*) FROM raw.tracking_events GROUP BY 1"))
    assert set(types) == {"page_view", "search", "product_view", "add_to_cart", "remove_from_cart", "login",
                          "checkout", "purchase", "other"}
    assert sum(t.unmapped_events.values()) == types["other"] and len(t.unmapped_events) == 2
    assert all(k.startswith(f"{folder}:") for k in t.unmapped_events)
    assert reconcile(c360_env, D)["landed"] == len(lines)


def test_clock_skew_is_corrected_from_the_vendors_timestamps(c360_env):
    """A device clock 3 h fast: Snowplow's derived_tstamp and Segment's originalTimestamp + (receivedAt - sentAt)
    give the true time, not the device's."""
    events = [e for e in journeys(D, visitors=5) if e.skew]
    assert events
    for vendor in ("snowplow", "segment"):
        lines, truth = encode(vendor, events)
        land(c360_env, vendor, lines)
    ingest(D, c360_env, ["tracking"])
    rows = q(c360_env, "SELECT vendor, min(occurred_at), max(occurred_at), count(*) FROM raw.tracking_events "
                       "GROUP BY 1 ORDER BY 1")
    true_times = sorted(e.at for e in events if not e.resent)
    for vendor, first, last, _n in rows:
        assert (first.astimezone(UTC), last.astimezone(UTC)) == (true_times[0], true_times[-1]), vendor


def test_unmapped_fields_are_kept_in_vendor_extra(c360_env):
    events = journeys(D, visitors=6)
    for vendor in ("snowplow", "segment", "ga4"):
        land(c360_env, vendor, encode(vendor, events)[0])
    ingest(D, c360_env, ["tracking"])

    def extra(vendor, event_type):
        rows = q(c360_env, "SELECT vendor_extra FROM raw.tracking_events WHERE vendor = ? AND event_type = ? "
                           "ORDER BY _source_line LIMIT 1", [vendor, event_type])
        return json.loads(rows[0][0])

    sp = extra("snowplow", "add_to_cart")
    assert sp["app_id"] == "shop" and sp["dvce_created_tstamp"] and sp["useragent"].startswith("Mozilla")
    schemas = [c["schema"] for c in sp["contexts"]]
    assert any("/product/" in s for s in schemas) and any("/cart/" in s for s in schemas)
    assert sp["unstruct_event"]["data"]["data"] == {"type": "add_to_cart"}
    assert "event_id" not in sp and "domain_userid" not in sp and "page_url" not in sp  # mapped: not repeated

    seg = extra("segment", "login")  # identify: its traits are kept (vendor_extra is PII in the contract)
    assert seg["traits"]["email"].endswith("@example.com") and seg["context"]["library"]["name"] == "analytics.js"
    assert "userId" not in seg and "messageId" not in seg and "url" not in seg["context"]["page"]
    seg_buy = extra("segment", "purchase")
    assert seg_buy["properties"]["revenue"] == 49.9 and seg_buy["properties"]["products"][0]["product_id"]

    ga = extra("ga4", "purchase")
    assert ga["event_params"]["ga_session_id"] == "1741600000" and "page_location" not in ga["event_params"]
    assert ga["items"][0]["item_name"] == "Runner" and ga["ecommerce"]["purchase_revenue"] == 49.9
    assert "transaction_id" not in ga["ecommerce"] and ga["event_date"] == "20260310"


def test_records_a_mapping_cannot_read_are_quarantined_with_their_text(c360_env, monkeypatch):
    from c360.config import get_settings

    monkeypatch.setenv("C360_MAX_QUARANTINE_RATE", "1.0")
    lines, _ = encode("snowplow", journeys(D, visitors=1))
    land(c360_env, "snowplow", [lines[0], "too\tfew\tfields", lines[1]])
    land(c360_env, "ga4", ['{"event_timestamp": "1"}', "[1, 2]", "not json"])
    land(c360_env, "segment", ['{"type": "track", "event": "Product Added", "anonymousId": "a"}'])  # no messageId
    t = ingest(D, get_settings(), ["tracking"]).entities["tracking"]
    assert (t.landed, t.loaded) == (7, 2)
    got = q(c360_env, "SELECT source_file, source_line, reason, detail, record FROM raw.quarantine ORDER BY 1, 2")
    assert [(f.split("/")[1], line, r) for f, line, r, _, _ in got] == [
        ("ga4", 1, "malformed_record"), ("ga4", 2, "malformed_record"), ("ga4", 3, "malformed_record"),
        ("segment", 1, "missing_required"), ("snowplow", 2, "malformed_record")]
    assert got[4][4] == "too\tfew\tfields" and got[3][3] == "event_id is required"


def test_vendor_folders_keep_the_landing_rules(c360_env, caplog):
    """Unknown vendor folders are ignored with a warning; a file type the folder does not take fails the entity
    naming it; sub-folders are not read; the own format still rejects vendor fields (schema_mismatch) and cannot
    set the vendor columns."""
    import logging

    from c360.ingest.readers import UnreadableFile

    store = LocalStorage(c360_env.landing_uri)
    lines, _ = encode("segment", journeys(D, visitors=2))
    land(c360_env, "segment", lines)
    store.write_bytes(f"tracking/mixpanel/dt={D}/a.jsonl", b'{"event": "x"}\n')
    store.write_bytes(f"tracking/segment/dt={D}/a.tsv", b"x\ty\n")
    store.write_bytes(f"tracking/segment/dt={D}/sub/b.jsonl", lines[0].encode())
    own = '{"event_id":"own-1","event_type":"page_view","occurred_at":"2026-03-10T10:00:00Z","anonymous_id":"a"}'
    store.write_bytes(f"tracking/dt={D}/own.jsonl", (own + "\n").encode())
    store.write_bytes(f"tracking/dt={D}/own-vendor.jsonl", (own.replace("own-1", "own-2")[:-1] + ',"vendor":"x"}\n').encode())
    with pytest.raises(UnreadableFile, match=f"tracking/segment/dt={D}/a.tsv: a .tsv file, which this folder does "
                                             r"not take; re-land it as \.jsonl, "):
        ingest(D, c360_env, ["tracking"])
    store.delete_prefix(f"tracking/segment/dt={D}/a.tsv")
    with caplog.at_level(logging.WARNING):
        t = ingest(D, c360_env, ["tracking"]).entities["tracking"]
    assert t.files == 3 and t.landed == len(lines) + 2
    assert t.reasons["schema_mismatch"] == 1  # vendor columns are set by adapters, not landed
    assert "tracking/mixpanel: neither a dt=YYYY-MM-DD folder nor a known vendor" in caplog.text
    assert f"tracking/segment/dt={D}/sub/: sub-folder of a partition, not read" in caplog.text
    assert q(c360_env, "SELECT vendor, vendor_extra FROM raw.tracking_events WHERE event_id = 'own-1'") == [(None, None)]


def test_a_removed_vendor_file_loses_its_rows_and_a_rerun_does_not_duplicate(c360_env):
    lines, truth = encode("ga4", journeys(D, visitors=3))
    key = land(c360_env, "ga4", lines)
    land(c360_env, "ga4", encode("ga4", journeys(D, visitors=2, prefix="w"))[0], name="part-1")
    first = ingest(D, c360_env, ["tracking"]).entities["tracking"]
    again = ingest(D, c360_env, ["tracking"]).entities["tracking"]
    assert again.loaded == first.loaded and q(c360_env, "SELECT count(*) FROM raw.tracking_events")[0][0] == first.loaded
    LocalStorage(c360_env.landing_uri).delete_prefix(key)
    after = ingest(D, c360_env, ["tracking"]).entities["tracking"]
    assert after.removed_files == [key]
    n_first_file = sum(e.outcome == "loaded" for e in truth)
    assert q(c360_env, "SELECT count(*) FROM raw.tracking_events")[0][0] == first.loaded - n_first_file


def test_a_warehouse_from_before_the_vendor_columns_gets_them(c360_env):
    from c360.ingest.contract import TRACKING

    old = [c for c in TRACKING.column_names if not c.startswith("vendor")]
    c360_env.warehouse_path.parent.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(str(c360_env.warehouse_path))
    con.execute("CREATE SCHEMA raw")
    con.execute("CREATE TABLE raw.tracking_events (" + ", ".join(f"{c} VARCHAR" for c in old) +
                ", _source_file VARCHAR, _source_line BIGINT, _dt DATE, _run_date DATE, _loaded_at TIMESTAMPTZ, "
                "_row_hash UHUGEINT)")
    con.close()
    land(c360_env, "segment", encode("segment", journeys(D, visitors=1))[0])
    assert ingest(D, c360_env, ["tracking"]).entities["tracking"].loaded > 0
    assert q(c360_env, "SELECT DISTINCT vendor FROM raw.tracking_events") == [("segment",)]


@pytest.mark.reliability
@pytest.mark.parametrize("vendor", ["snowplow", "segment", "ga4"])
def test_an_erased_customers_vendor_events_stay_out_on_every_reload(c360_env, vendor):
    """Erasure leaves the landing zone as the vendor sent it (docs/runbooks.md, erase a customer), so each reload
    of tracking/<vendor>/dt=D must quarantine the customer's events, and their cookie's anonymous ones, as
    erased_customer without their text; the other visitors' events load as before."""
    from c360.privacy import erasure as privacy

    lines, truth = encode(vendor, journeys(D, visitors=6))
    land(c360_env, vendor, lines)
    first = ingest(D, c360_env, ["tracking"]).entities["tracking"]
    loaded = [e.row for e in truth if e.outcome == "loaded"]
    customer = next(r["customer_id"] for r in loaded if r["customer_id"])
    cookies = {r["anonymous_id"] for r in loaded if r["customer_id"] == customer}
    theirs = sum(1 for r in loaded if r["customer_id"] == customer
                 or (not r["customer_id"] and r["anonymous_id"] in cookies))
    assert theirs > 0

    privacy.erase_customer(customer, c360_env)
    again = ingest(D, c360_env, ["tracking"]).entities["tracking"]

    assert again.reasons["erased_customer"] == theirs
    assert again.loaded == first.loaded - theirs and again.landed == len(lines)
    assert q(c360_env, "SELECT count(*) FROM raw.tracking_events WHERE customer_id = ? OR anonymous_id IN "
                       "(SELECT unnest(?))", [customer, sorted(cookies)]) == [(0,)]
    assert q(c360_env, "SELECT count(*) FROM raw.quarantine WHERE reason = 'erased_customer' AND record IS NOT NULL"
             ) == [(0,)]
    assert reconcile(c360_env, D)["landed"] == len(lines)
