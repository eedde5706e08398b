"""Identity graph (issue #18 Deliver 3): customer ids stitched into persons over email hashes and cookies.

Tiny raw warehouses, the dbt models int_identity_* -> person_members / person_merges / dim_persons, built for real.
"""

from __future__ import annotations

import hashlib
from datetime import date

import duckdb
import pytest

from c360.config import get_settings
from c360.pipeline import transform
from tests import dbt_testkit as kit

pytestmark = pytest.mark.integration

SELECT = ["--select", "fx_rates +dim_persons +person_merges int_identity_guarded_identifiers"]
D1, D2, D3 = "2025-03-01", "2025-03-02", "2025-03-03"


def person_of(customer_id: str) -> str:
    return "p_" + hashlib.sha256(customer_id.encode()).hexdigest()[:24]


def _order(order_id, customer_id, at):
    return {"order_id": order_id, "customer_id": customer_id, "ordered_at": at, "amount": 10}


def _customer(customer_id, email, at, signup=True):
    row = {"customer_id": customer_id, "email": email, "updated_at": at}
    if signup:
        row["signup_at"] = at
    return row


def _login(event_id, cookie, customer_id, at):
    return {"event_id": event_id, "anonymous_id": cookie, "occurred_at": at, "event_type": "login",
            "customer_id": customer_id}


def build(run_date: str):
    settings = get_settings()
    transform.run_dbt([*kit.BUILD_MODELS, *SELECT], date.fromisoformat(run_date), settings)
    con = duckdb.connect(str(settings.warehouse_path), read_only=True)
    try:
        members = dict(con.execute("select customer_id, person_id from marts.person_members").fetchall())
        merges = con.execute(
            "select person_id, merged_customer_id, previous_person_id, merged_on, merge_kind, linked_by "
            "from marts.person_merges order by merged_customer_id").fetchall()
        guarded = con.execute(
            "select identifier_type, identifier, customer_count from intermediate.int_identity_guarded_identifiers"
        ).fetchall()
        persons = con.execute(
            "select person_id, anchor_customer_id, customer_id_count from marts.dim_persons"
        ).fetchall()
    finally:
        con.close()
    return members, merges, guarded, persons


@pytest.fixture
def shop(tmp_path, monkeypatch):
    kit.configure_env(monkeypatch, tmp_path)
    con = duckdb.connect(str(get_settings().warehouse_path))
    kit.create_raw_tables(con)
    # D1: Ann's account C1 with an order; a shared shop tablet T on which four accounts log in
    kit.insert(con, "customers", [
        _customer("C1", "ann@example.com", "2025-03-01T08:00:00Z"),
        *[_customer(f"S{i}", f"s{i}@example.com", "2025-03-01T08:00:00Z") for i in range(1, 5)],
    ], D1)
    kit.insert(con, "transactions", [_order("O1", "C1", "2025-03-01T09:00:00Z")], D1)
    kit.insert(con, "tracking_events", [
        _login(f"t{i}", "T", f"S{i}", f"2025-03-01T1{i}:00:00Z") for i in range(1, 5)], D1)
    # D2: a guest checkout G1 with Ann's email typed differently (case, blanks); no account, no signup
    kit.insert(con, "customers", [_customer("G1", "  Ann@Example.COM ", "2025-03-02T10:00:00Z", signup=False)], D2)
    kit.insert(con, "transactions", [_order("O2", "G1", "2025-03-02T10:00:00Z")], D2)
    con.close()
    return tmp_path


def test_guest_order_merges_with_the_account_by_normalised_email(shop):
    members, merges, _, persons = build(D2)
    # the guest joins Ann's person, whose id is her earlier account's hash (not the guest's)
    assert members["C1"] == members["G1"] == person_of("C1")
    assert (person_of("C1"), "C1", 2) in persons
    assert merges == [(person_of("C1"), "G1", person_of("G1"), date(2025, 3, 2), "linked_at_creation",
                       ["email_sha256"])]
    # on D1 the guest did not exist yet: the graph of a past date sees only what was known then
    members_d1, merges_d1, _, _ = build(D1)
    assert "G1" not in members_d1 and merges_d1 == []
    # the models' data tests (uniqueness, relationships, accepted values) hold
    transform.run_dbt(["test", *SELECT], date.fromisoformat(D2), get_settings())


def test_shared_device_is_guarded_and_merges_nobody(shop):
    members, merges, guarded, _ = build(D2)
    assert guarded == [("anonymous_id", "T", 4)]
    assert len({members[f"S{i}"] for i in range(1, 5)}) == 4
    assert all(m[1] != f"S{i}" for m in merges for i in range(1, 5))


def test_the_guard_threshold_is_a_var(shop, monkeypatch):
    monkeypatch.setenv("C360_IDENTITY_MAX_CUSTOMERS_PER_IDENTIFIER", "4")
    members, _, guarded, _ = build(D2)
    # the shared tablet is no longer over the threshold, but its accounts' emails differ: still guarded
    assert guarded == [("anonymous_id", "T", 4)]
    assert len({members[f"S{i}"] for i in range(1, 5)}) == 4
    with duckdb.connect(str(get_settings().warehouse_path), read_only=True) as con:
        assert con.execute("select identifier, guard_reason from intermediate.int_identity_guarded_identifiers"
                           ).fetchall() == [("T", "conflicting_emails")]
    # without emails on the accounts, the threshold is all that stands between them and one giant person
    with duckdb.connect(str(get_settings().warehouse_path)) as con:
        con.execute("update raw.customers set email = null where customer_id like 'S%'")
    members, _, _, _ = build(D2)
    assert len({members[f"S{i}"] for i in range(1, 5)}) == 1  # one (wrong) giant person: the threshold matters


def test_a_cookie_links_an_account_to_an_email_less_id_and_a_later_merge_keeps_the_older_person_id(shop):
    con = duckdb.connect(str(get_settings().warehouse_path))
    # D3: on her phone Ann logs in to her account C1 and to an app user id U7 that has no profile (no email)
    kit.insert(con, "tracking_events", [
        _login("p1", "PHONE", "C1", "2025-03-03T09:00:00Z"), _login("p2", "PHONE", "U7", "2025-03-03T10:00:00Z")], D3)
    # and an unrelated customer arrives: nobody's person id changes
    kit.insert(con, "customers", [_customer("Z9", "zed@example.com", "2025-03-03T08:00:00Z")], D3)
    con.close()
    members, merges, guarded, _ = build(D3)
    assert {members["C1"], members["G1"], members["U7"]} == {person_of("C1")}
    assert members["Z9"] == person_of("Z9")
    assert [(m[1], m[4], m[5]) for m in merges] == [
        ("G1", "linked_at_creation", ["email_sha256"]), ("U7", "linked_at_creation", ["anonymous_id"])]
    assert ("anonymous_id", "PHONE", 2) not in guarded


def test_a_device_shared_by_two_accounts_with_different_emails_merges_nobody(shop):
    con = duckdb.connect(str(get_settings().warehouse_path))
    # D3: Ann's partner Bob opens account B1 with his own email and logs in on the couple's laptop, as Ann does;
    # an app user id without a profile also logs in there
    kit.insert(con, "customers", [_customer("B1", "bob@example.com", "2025-03-03T08:00:00Z")], D3)
    kit.insert(con, "tracking_events", [
        _login("l1", "LAPTOP", "C1", "2025-03-03T09:00:00Z"), _login("l2", "LAPTOP", "B1", "2025-03-03T10:00:00Z"),
        _login("l3", "LAPTOP", "U8", "2025-03-03T11:00:00Z")], D3)
    con.close()
    members, merges, guarded, _ = build(D3)
    # two known, different emails on one device: a household, not one person (and not glued through U8 either)
    assert len({members["C1"], members["B1"], members["U8"]}) == 3
    assert members["C1"] == members["G1"] == person_of("C1")
    assert ("anonymous_id", "LAPTOP", 3) in guarded
    assert not [m for m in merges if m[1] in ("B1", "U8")]
    with duckdb.connect(str(get_settings().warehouse_path), read_only=True) as con:
        reasons = dict(con.execute("select identifier, guard_reason from intermediate.int_identity_guarded_identifiers"
                                   ).fetchall())
    assert reasons == {"T": "too_many_customers", "LAPTOP": "conflicting_emails"}


def test_withdrawing_the_link_splits_the_person_at_the_next_build(shop):
    members, _, _, _ = build(D2)
    assert members["G1"] == members["C1"]
    con = duckdb.connect(str(get_settings().warehouse_path))
    # the guest's customer row (the only evidence of the email) is withdrawn from raw
    con.execute("delete from raw.customers where customer_id = 'G1'")
    con.close()
    members, merges, _, persons = build(D2)
    assert members["C1"] == person_of("C1") and members["G1"] == person_of("G1")
    assert merges == []
    assert (person_of("C1"), "C1", 1) in persons


def test_a_member_merged_later_records_the_day_of_the_merge(shop):
    con = duckdb.connect(str(get_settings().warehouse_path))
    # D3: the guest G1 changes nothing; C3 (own email, known since D1 via an order only) logs in on Ann's phone
    # together with C1 only on D3: a merge of two persons that existed apart
    kit.insert(con, "transactions", [_order("O3", "C3", "2025-03-01T12:00:00Z")], D1)
    kit.insert(con, "tracking_events", [
        _login("q1", "PHONE", "C1", "2025-03-03T09:00:00Z"), _login("q2", "PHONE", "C3", "2025-03-03T10:00:00Z")], D3)
    con.close()
    members, merges, _, _ = build(D3)
    assert members["C3"] == person_of("C1")
    assert (person_of("C1"), "C3", person_of("C3"), date(2025, 3, 3), "merged", ["anonymous_id"]) in merges


def test_a_vendor_identify_email_links_a_vendor_user_to_the_account(shop):
    con = duckdb.connect(str(get_settings().warehouse_path))
    # D3: Segment identify for user V7 (a vendor user id landed as customer_id) with Ann's email in its traits
    kit.insert(con, "tracking_events", [_login("v1", "SEG-ANON", "V7", "2025-03-03T09:00:00Z")], D3)
    con.execute("""update raw.tracking_events set vendor = 'segment', vendor_event_name = 'identify',
                   vendor_extra = '{"traits": {"email": " ANN@example.com"}}' where event_id = 'v1'""")
    con.close()
    members, merges, _, _ = build(D3)
    assert members["V7"] == person_of("C1")
    assert ("V7", ["email_sha256"]) in [(m[1], m[5]) for m in merges]


def test_erasing_one_customer_id_erases_its_person_and_no_stranger(shop):
    """Erasure follows the graph: naming the guest checkout erases Ann's account too (merged by email), from every
    identity table; naming one account of the guarded shop tablet erases that account alone."""
    from c360.ingest.load import ensure_raw_schema
    from c360.privacy import erasure as privacy

    members, _, _, _ = build(D2)
    assert members["C1"] == members["G1"]
    settings = get_settings()
    with duckdb.connect(str(settings.warehouse_path)) as con:
        ensure_raw_schema(con)  # the ingestion's bookkeeping tables, which the erasure records into
    result = privacy.erase_customer("G1", settings)  # the guest, not the anchor of Ann's person
    assert result.person_id == person_of("C1") and len(result.member_keys) == 2
    tablet = privacy.erase_customer("S1", settings)  # S1..S4 share the guarded tablet T: not one person
    assert tablet.person_id == person_of("S1") and len(tablet.member_keys) == 1
    con = duckdb.connect(str(settings.warehouse_path), read_only=True)
    try:
        tables = con.execute(
            "select table_schema, table_name, column_name from information_schema.columns "
            "where table_schema in ('raw', 'intermediate', 'marts') and (table_name like 'int_identity_%' "
            "or table_name in ('dim_persons', 'person_members', 'person_merges', 'customers', 'transactions'))"
        ).fetchall()

        def hits(value):
            return {f"{s}.{t}.{c}" for s, t, c in tables
                    if con.execute(f'select count(*) from "{s}"."{t}" where contains("{c}"::varchar, ?)',
                                   [value]).fetchone()[0]}

        found = {who: hits(who) for who in ("C1", "G1", "S1", "S2")}
        left = con.execute("select customer_id from marts.person_members order by 1").fetchall()
        log = con.execute("select count(*), count(distinct erasure_id) from privacy.erasure_log").fetchone()
    finally:
        con.close()
    assert {t for _, t, _ in tables} >= {"int_identity_identifiers", "person_members", "dim_persons"}
    assert found["C1"] == found["G1"] == found["S1"] == set()  # every column, lists included, cast to text
    assert "raw.customers.customer_id" in found["S2"]
    assert left == [("S2",), ("S3",), ("S4",)]  # the tablet's other accounts are strangers: kept
    assert log == (3, 2)  # one log row per erased customer id, one erasure_id per request


PERSON_SELECT = ["--select", "fx_rates +customer_360 +labels_churn"]


def build_person_grain(run_date: str):
    """Build the feature store, its churn labels and customer_360 for run_date; rows keyed by customer_id."""
    settings = get_settings()
    transform.run_dbt([*kit.BUILD_MODELS, *PERSON_SELECT], date.fromisoformat(run_date), settings)
    con = duckdb.connect(str(settings.warehouse_path), read_only=True)
    try:
        features = {r[0]: r[1:] for r in con.execute(
            "select customer_id, person_id, customer_id_count, orders_count, gross_revenue_eur::double, purchase_days, "
            "has_profile from feature_store.customer_features where as_of_date = ?", [run_date]).fetchall()}
        c360 = {r[0]: r[1:] for r in con.execute(
            "select customer_id, person_id, customer_id_count, orders_count, net_revenue_eur::double "
            "from marts.customer_360").fetchall()}
        labels = dict(con.execute("select customer_id, churned from feature_store.labels_churn "
                                  "where as_of_date = ?", [D1]).fetchall())
    finally:
        con.close()
    return features, c360, labels


def tracking_of(run_date: str) -> dict[str, tuple]:
    """customer_id -> (sessions_90d, days_since_last_visit, first_touch_channel) of the run_date snapshot."""
    with duckdb.connect(str(get_settings().warehouse_path), read_only=True) as con:
        return {r[0]: r[1:] for r in con.execute(
            "select customer_id, sessions_90d, days_since_last_visit, first_touch_channel "
            "from feature_store.customer_features where as_of_date = ? and has_tracking", [run_date]).fetchall()}


def test_customer_360_and_the_feature_store_are_keyed_by_person_and_split_when_the_link_goes(shop, monkeypatch):
    monkeypatch.setenv("C360_CHURN_HORIZON_DAYS", "1")  # so the D1 snapshot gets its label on D2
    # Ann browses from a search engine and logs in on her laptop on D1; the guest checkout's purchase is tracked on a
    # phone on D2 (a purchase event of order O2: evidence that the phone is G1's)
    with kit.connect() as con:
        kit.insert(con, "tracking_events", [
            kit._event("l1", "LAPTOP-ANN", "2025-03-01T08:55:00Z", page_url="/home",
                       referrer="https://www.google.com/search"),
            _login("l2", "LAPTOP-ANN", "C1", "2025-03-01T08:58:00Z")], D1)
        kit.insert(con, "tracking_events", [
            kit._event("p1", "PHONE-G1", "2025-03-02T09:50:00Z", "purchase", order_id="O2", device_type="mobile")], D2)
    build_person_grain(D1)
    features, c360, labels = build_person_grain(D2)
    # Ann: account C1 (order O1 on D1) and guest checkout G1 (order O2 on D2), merged by email: one person, keyed by
    # the account (the CRM's id), with both orders; the guest has no row of its own
    assert features["C1"] == (person_of("C1"), 2, 2, 20.0, 2, True)
    assert c360["C1"] == (person_of("C1"), 2, 2, 20.0)
    assert "G1" not in features and "G1" not in c360
    # the tablet's four accounts are strangers (guarded identifier): four persons of one customer id each
    assert {c360[f"S{i}"][:2] for i in range(1, 5)} == {(person_of(f"S{i}"), 1) for i in range(1, 5)}
    assert len(c360) == len({row[0] for row in c360.values()})  # one row per person
    # retroactive label: the D1 snapshot (C1 alone then) is not churned, because the guest id of the same person
    # bought on D2 - the graph of today decides whose purchases count
    assert labels["C1"] is False
    # the person's tracking: both members' sessions (the laptop's D1 session, the phone's D2 one), its first touch the
    # search visit: persons of several ids are computed from their members' sessions, not the per-id running totals
    ann = tracking_of(D2)["C1"]
    assert ann[:2] == (2, 0) and ann[2] != "direct"

    con = duckdb.connect(str(get_settings().warehouse_path))
    con.execute("delete from raw.customers where customer_id = 'G1'")  # the only evidence of the guest's email
    con.close()
    features, c360, _ = build_person_grain(D2)
    assert features["C1"] == (person_of("C1"), 1, 1, 10.0, 1, True)
    assert features["G1"] == (person_of("G1"), 1, 1, 10.0, 1, False)
    assert c360["G1"] == (person_of("G1"), 1, 1, 10.0)
    # split again: each id is a person of one and takes its own running totals
    tracking = tracking_of(D2)
    assert tracking["C1"] == (1, 1, ann[2])
    assert tracking["G1"] == (1, 0, "direct")


def test_erasing_a_customer_of_a_shared_cookie_recomputes_the_others_tracking(shop):
    """A family laptop: anonymous browsing from a search engine, then S2 logs in, later S1. Erasing S1 erases the
    laptop's anonymous sessions (S2's own, logged-in ones stay). S2's running session totals counted the anonymous one
    (attributed to S2, who identified next) and the laptop does not change, it goes: the next build must not keep it."""
    from c360.ingest.load import ensure_raw_schema
    from c360.privacy import erasure as privacy

    with kit.connect() as con:
        kit.insert(con, "tracking_events", [
            kit._event("f1", "FAMILY", "2025-03-01T07:00:00Z", page_url="/home",
                       referrer="https://www.google.com/search"),
            _login("f2", "FAMILY", "S2", "2025-03-01T08:00:00Z"),
            _login("f3", "FAMILY", "S1", "2025-03-01T20:00:00Z")], D1)

    def s2() -> tuple:
        with duckdb.connect(str(get_settings().warehouse_path), read_only=True) as con:
            totals = con.execute("select sessions_total from feature_store_work.fs_customer_session_totals "
                                 "where customer_id = 'S2'").fetchall()
        return totals, tracking_of(D2)["S2"][2]

    build_person_grain(D1)
    build_person_grain(D2)  # the next night: the laptop's cookie-days are history now
    first_touch = s2()[1]
    assert s2() == ([(3,)], first_touch) and first_touch != "direct"  # the laptop's two sessions and the tablet's
    settings = get_settings()
    with duckdb.connect(str(settings.warehouse_path)) as con:
        ensure_raw_schema(con)
    # the dry run says the table goes: S1's row and the others' (S2 and the tablet's S3, S4)
    dry = privacy.erase_customer("S1", settings, dry_run=True)
    assert dry.tables["feature_store_work.fs_customer_session_totals"] == 4
    assert s2()[0] == [(3,)]  # and changes nothing
    privacy.erase_customer("S1", settings)
    build_person_grain(D2)  # D2 again: nothing about the laptop is new, yet a session of S2's is gone
    assert s2() == ([(2,)], "direct")
