"""A shop migrating from Segment to Snowplow (issue #18): both tags fire on the overlapping days, with different
cookies and event ids, and C360_TRACKING_SOURCES' cut-over makes dbt's sessions count every visit once."""

from __future__ import annotations

from datetime import date, timedelta

import duckdb
import pytest

from c360.config import get_settings
from c360.ingest.load import ingest
from c360.pipeline import transform
from c360.storage import LocalStorage
from c360dev.generate.vendors import encode, journeys, landing_key
from tests import dbt_testkit as kit

pytestmark = pytest.mark.integration

D1, D2, D3 = date(2026, 3, 9), date(2026, 3, 10), date(2026, 3, 11)
VISITORS = 7  # no bots among them (Snowplow would quarantine those, Segment cannot tell): one visit each a day


def test_two_vendors_on_overlapping_days_give_one_session_stream(tmp_path, monkeypatch):
    kit.configure_env(monkeypatch, tmp_path)
    monkeypatch.setenv("C360_TRACKING_SOURCES", "segment:..2026-03-10, snowplow:2026-03-10..")
    settings = get_settings()
    store = LocalStorage(settings.landing_uri)
    visits = {}
    for day in (D1, D2, D3):
        events = [e for e in journeys(day, visitors=VISITORS, prefix=f"d{day.day}") if not e.resent]
        visits[day] = events
        store.write_bytes(landing_key("segment", day), ("\n".join(encode("segment", events)[0]) + "\n").encode())
        if day >= D2:  # the Snowplow tag goes live on D2, Segment is switched off after D3
            store.write_bytes(landing_key("snowplow", day), ("\n".join(encode("snowplow", events)[0]) + "\n").encode())
    for day in (D1, D2, D3):
        ingest(day, settings, ["tracking"])

    transform.run_dbt([*kit.BUILD_MODELS, "--select", "fx_rates +fct_sessions"], D3, settings)
    # the staging contract holds for vendor rows: event_type incl. 'other', vendor, unique event ids
    transform.run_dbt(["test", "--select", "stg_shop__tracking_events"], D3, settings)

    con = duckdb.connect(str(settings.warehouse_path), read_only=True)
    try:
        raw = dict(con.execute("SELECT _dt, count(*) FROM raw.tracking_events GROUP BY 1").fetchall())
        sessions = con.execute(
            """SELECT session_date, count(*), count(*) FILTER (WHERE anonymous_id LIKE 'd%-cookie-%'),
                      sum(has_purchase::int), sum(cart_adds), sum(events_count)
               FROM marts.fct_sessions GROUP BY 1 ORDER BY 1""").fetchall()
    finally:
        con.close()
    # both vendors' events are in raw (nothing dropped at ingestion) ...
    assert raw == {D1: len(visits[D1]), D2: 2 * len(visits[D2]), D3: 2 * len(visits[D3])}
    # ... but each day's visits are counted once: Segment's before the cut-over, Snowplow's from it
    buyers = sum(1 for e in visits[D1] if e.kind == "purchase")
    adds = sum(1 for e in visits[D1] if e.kind == "add_to_cart")
    assert sessions == [
        (D1, VISITORS, VISITORS, buyers, adds, len(visits[D1])),
        (D2, VISITORS, 0, buyers, adds, len(visits[D2])),
        (D3, VISITORS, 0, buyers, adds, len(visits[D3])),
    ]
    assert timedelta(days=1) == D2 - D1


def test_a_malformed_cut_over_fails_at_start_up_naming_the_item(monkeypatch):
    monkeypatch.setenv("C360_TRACKING_SOURCES", "segment:..2026-03-10,snowplw:2026-03-10..")
    with pytest.raises(ValueError, match="'snowplw:2026-03-10..' is not <source>:<from>..<until>"):
        get_settings()
