"""A night's incremental build equals a full rebuild (`--full-refresh`) on the same data, for the incremental models
under the snapshot (docs/scale.md, "Nightly cost and history"): int_session_states and int_identity_links (whose
nightly run now reads only the window's events), int_customer_daily_orders, int_order_lines, marts.fct_sessions
(rebuilt per changed cookie-day, and whole for a cookie with new links), and the snapshot built from them
(fs_customer_likes_asof, which reads 90 days of interactions, and the running totals fs_customer_order_totals,
fs_customer_session_totals and fs_customer_category_buys, which a night recomputes only for the customers whose
orders, cookies or bought products changed).

The nights see what makes the narrow reads risky: an order whose purchase event was tracked days before the order
arrived (the link must come from the order, the event lying outside the window), a tracking event landing nine
days late that merges two sessions of a cookie (the cookie's old events must be read again), and a correction of an
order line first known long before the window (the order models rank only the changed orders' versions), and a
product re-categorised after its only buyer's last order (that buyer's lifetime purchases per category and the
order's line move to the new category although nothing of theirs changed).
"""

from __future__ import annotations

from datetime import date

import duckdb
import pytest

from c360.config import get_settings
from c360.pipeline import transform
from tests import dbt_testkit as kit

pytestmark = pytest.mark.integration

FIRST = date(2025, 1, 11)
NIGHTS = [date(2025, 1, 14), date(2025, 1, 17), date(2025, 1, 20)]
LATEST = NIGHTS[-1]

EXTRA_TRACKING = {
    # a guest checkout tracked on 01-11 on cookie A5; its order O9 only arrives with the 01-17 partition
    "2025-01-11": [
        kit._event("g0", "A5", "2025-01-11T11:50:00Z", "product_view", product_id="P1"),
        kit._event("g1", "A5", "2025-01-11T12:00:00Z", "purchase", order_id="O9"),
    ],
    # cookie A6's only session of 01-12 starts at 00:10 ...
    "2025-01-12": [kit._event("m1", "A6", "2025-01-12T00:10:00Z", "page_view")],
    # happened on 01-10 between A3's 12:10 and 13:00 events (joining their sessions), lands nine days late; and an
    # event of A6 at 01-11 23:55, a week late, absorbs A6's 01-12 session into 01-11: 01-12 gets an empty state,
    # which takes the table's state of 01-12 (older than the night's window) to find
    "2025-01-19": [kit._event("late3", "A3", "2025-01-10T12:35:00Z", "product_view", product_id="P2",
                              device_type="mobile"),
                   kit._event("m0", "A6", "2025-01-11T23:55:00Z", "page_view")],
}
EXTRA_TRANSACTIONS = {
    "2025-01-17": [{"order_id": "O9", "customer_id": "C3", "ordered_at": "2025-01-11T12:00:00Z", "product_id": "P1",
                    "quantity": 1, "amount": 20}],
    # a correction of O1's line (ordered and first known 01-02, long before the window): the night ranks only the
    # changed orders' versions, and must still end the old version on 01-19 and state C1's 01-02 anew
    "2025-01-19": [{"order_id": "O1", "customer_id": "C1", "ordered_at": "2025-01-02T10:00:00Z", "line_id": 1,
                    "product_id": "P1", "quantity": 2, "unit_price": 45, "amount": 90, "currency": "EUR",
                    "channel": "web", "updated_at": "2025-01-19T08:00:00Z"}],
}

# P3 (books), bought by C2 on 01-05 only, is re-categorised on 01-18: C2's orders change no more after 01-16
EXTRA_PRODUCTS = {
    "2025-01-18": [{"product_id": "P3", "name": "Novel", "category": "Comics", "price": 30, "currency": "EUR",
                    "updated_at": "2025-01-18T08:00:00Z"}],
}

# relation -> an order giving every row a fixed place
CHECKED = {
    "intermediate.int_order_lines": "line_key",
    "intermediate.int_customer_daily_orders": "customer_id, activity_date, known_date",
    "intermediate.int_session_states": "anonymous_id, session_date, known_date, session_id",
    "intermediate.int_identity_links": "anonymous_id, customer_id, link_date, known_date",
    "marts.fct_sessions": "session_id",
}
REBUILT = ["int_order_lines", "int_customer_daily_orders", "int_session_states", "int_identity_links",
           "fs_customer_order_totals", "fs_customer_session_totals", "fs_customer_category_buys", "fct_sessions"]


def land(con, after: date, up_to: date) -> None:
    """Land every partition with after < dt <= up_to: the base scenario's and the extra rows above."""
    for source in (kit.TRANSACTIONS, EXTRA_TRANSACTIONS):
        for dt, rows in source.items():
            if after < date.fromisoformat(dt) <= up_to:
                kit.insert(con, "transactions", rows, dt)
    for source in (kit.TRACKING, EXTRA_TRACKING):
        for dt, rows in source.items():
            if after < date.fromisoformat(dt) <= up_to:
                kit.insert(con, "tracking_events", rows, dt)
    for dt, rows in EXTRA_PRODUCTS.items():
        if after < date.fromisoformat(dt) <= up_to:
            kit.insert(con, "products", rows, dt)


def read(relations: dict[str, str]) -> dict[str, list[tuple]]:
    with duckdb.connect(str(get_settings().warehouse_path), read_only=True) as con:
        return {r: kit.table_rows(con, r, order) for r, order in relations.items()}


def snapshot(day: date) -> list[tuple]:
    with duckdb.connect(str(get_settings().warehouse_path), read_only=True) as con:
        return con.execute("select * from feature_store.customer_features where as_of_date = ? order by customer_id",
                           [day]).fetchall()


def top_bought(day: date) -> dict[str, str | None]:
    with duckdb.connect(str(get_settings().warehouse_path), read_only=True) as con:
        return dict(con.execute("select customer_id, top_bought_category from feature_store.customer_features "
                                "where as_of_date = ?", [day]).fetchall())


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Nightly increments (a first build, then three nights with data landing in between), then a full rebuild of
    the incremental models on the same data and the night's snapshot built again from them."""
    root = tmp_path_factory.mktemp("dbt_incremental")
    with pytest.MonkeyPatch.context() as mp:
        kit.configure_env(mp, root)
        settings = get_settings()
        with kit.connect() as con:
            kit.seed_base(con, up_to="2025-01-07", tracking=False)  # products, profiles, the first orders
            land(con, date(2025, 1, 7), FIRST)
        transform.run_dbt(kit.BUILD_MODELS, FIRST, settings)
        previous = FIRST
        for night in NIGHTS:
            with kit.connect() as con:
                land(con, previous, night)
            transform.run_dbt(kit.BUILD_MODELS, night, settings)
            previous = night
        nightly = read(CHECKED)
        nightly_snapshot = snapshot(LATEST)
        nightly_bought = top_bought(LATEST)

        transform.run_dbt(["run", "--full-refresh", "-s", *REBUILT], LATEST, settings)
        rebuilt = read(CHECKED)
        transform.run_dbt(kit.BUILD_MODELS, LATEST, settings)
        yield {"nightly": nightly, "rebuilt": rebuilt, "nightly_snapshot": nightly_snapshot,
               "rebuilt_snapshot": snapshot(LATEST), "nightly_bought": nightly_bought}


@pytest.mark.parametrize("relation", list(CHECKED))
def test_nightly_increments_equal_a_full_rebuild(built, relation):
    assert built["nightly"][relation], f"{relation} is empty: the scenario no longer exercises it"
    assert built["nightly"][relation] == built["rebuilt"][relation], f"{relation}: nightly and full rebuild differ"


def test_snapshot_from_increments_equals_the_one_from_a_full_rebuild(built):
    assert len(built["nightly_snapshot"]) == 4  # C1..C4
    assert built["nightly_snapshot"] == built["rebuilt_snapshot"]


def test_an_order_arriving_after_its_tracked_purchase_links_the_cookie_that_night(built):
    """The purchase event (01-11) is outside the 01-17 night's window; the order that lands then makes it evidence."""
    links = [r for r in built["nightly"]["intermediate.int_identity_links"] if r[0] == "A5"]
    assert [(r[1], r[2], r[3]) for r in links] == [("C3", date(2025, 1, 11), date(2025, 1, 17))]


def test_a_correction_of_an_old_order_is_the_current_line_and_a_new_state_of_its_day(built):
    with duckdb.connect(str(get_settings().warehouse_path), read_only=True) as con:
        line = con.execute("select amount, version_count from intermediate.int_order_lines "
                           "where order_id = 'O1'").fetchall()
        states = con.execute("select known_date, gross_revenue_eur from intermediate.int_customer_daily_orders "
                             "where customer_id = 'C1' and activity_date = date '2025-01-02' "
                             "order by known_date").fetchall()
    assert [(float(a), n) for a, n in line] == [(90.0, 2)]
    assert [(k, float(v)) for k, v in states] == [(date(2025, 1, 2), 100.0), (date(2025, 1, 19), 90.0)]


def test_a_late_event_absorbing_a_days_only_session_empties_that_day(built):
    """A6's 01-12 session (known 01-12, before the 01-20 night's window) is absorbed into 01-11 by the late event:
    the night writes an empty state for 01-12 and the session once, on 01-11."""
    states = sorted((r[2], r[3], r[0] is None) for r in built["nightly"]["intermediate.int_session_states"]
                    if r[1] == "A6")
    assert states == [(date(2025, 1, 11), date(2025, 1, 19), False), (date(2025, 1, 12), date(2025, 1, 12), False),
                      (date(2025, 1, 12), date(2025, 1, 19), True)]


def test_a_late_event_merges_the_old_sessions_it_falls_between(built):
    """A3's 12:10 and 13:00 sessions of 01-10 (a 50 minute pause) become one when the 12:35 event lands on 01-19:
    the latest state of that cookie-day has one session fewer than the state before."""
    states = [r for r in built["nightly"]["intermediate.int_session_states"]
              if r[1] == "A3" and r[2] == date(2025, 1, 10)]
    by_known: dict[date, int] = {}
    for r in states:
        by_known[r[3]] = by_known.get(r[3], 0) + 1
    assert sorted(by_known) == [date(2025, 1, 10), date(2025, 1, 19)]
    assert by_known[date(2025, 1, 19)] == by_known[date(2025, 1, 10)] - 1


def test_a_re_categorised_product_moves_its_buyers_purchases_that_night(built):
    """C2's lines: P3 (01-05, books until 01-18) and P1 (01-15, shoes), one each; the tie goes to the alphabetically
    first category. At 01-20 P3 is comics, and the night's incremental running totals must say so although C2's orders
    last changed on 01-16; int_order_lines' O3 sale line carries the product's current category too."""
    assert built["nightly_bought"]["C2"] == "comics"
    sale = [r for r in built["nightly"]["intermediate.int_order_lines"] if r[1] == "O3" and r[3] == "sale"]
    assert [r[6] for r in sale] == ["comics"]
