"""Erasure that follows the identity graph, on a stale or partial graph (issue #18): marts.person_members is the graph
of the last dbt build, so it may list a member that is already gone, or not know the id at all. The erasure still
completes, erases exactly the person's ids, and loses nothing else: every other row stays, and every erased raw row
is an erased_customer tombstone (raw rows before = raw rows after + tombstones)."""

from __future__ import annotations

import duckdb
import pytest

from c360.ingest.load import ensure_raw_schema
from c360.privacy import erasure as privacy
from tests import dbt_testkit as kit

pytestmark = pytest.mark.reliability

D = "2025-03-01"


def _order(order_id, customer_id):
    return {"order_id": order_id, "customer_id": customer_id, "ordered_at": f"{D}T09:00:00Z", "amount": 10}


@pytest.fixture
def warehouse(c360_env):
    settings = c360_env
    settings.warehouse_path.parent.mkdir(parents=True, exist_ok=True)
    with duckdb.connect(str(settings.warehouse_path)) as con:
        kit.create_raw_tables(con)
        ensure_raw_schema(con)
        kit.insert(con, "transactions", [_order("O1", "C1"), _order("O2", "G1"), _order("O3", "Z9")], D)
        kit.insert(con, "customers", [{"customer_id": c, "email": f"{c.lower()}@example.com",
                                       "updated_at": f"{D}T08:00:00Z"} for c in ("C1", "G1", "Z9")], D)
        con.execute("create schema marts")
        # the last build's graph: C1 + G1 + GONE (a member erased since, alone), Z9 alone
        con.execute("create table marts.person_members (person_id varchar, customer_id varchar)")
        con.execute("insert into marts.person_members values ('p_a', 'C1'), ('p_a', 'G1'), ('p_a', 'GONE'), "
                    "('p_z', 'Z9')")
    return settings


def _raw(settings) -> dict[str, list]:
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        return {t: con.execute(f"select customer_id from raw.{t} order by 1").fetchall()
                for t in ("transactions", "customers")} | {
            "tombstones": con.execute("select count(*) from raw.quarantine where reason = 'erased_customer'")
            .fetchall()[0][0],
            "log": con.execute("select count(*), count(distinct erasure_id) from privacy.erasure_log").fetchall()[0]}


def test_a_member_already_gone_does_not_stop_the_erasure_and_nothing_else_is_lost(warehouse):
    result = privacy.erase_customer("G1", warehouse, compact=False)

    assert result.person_id == "p_a" and len(result.member_keys) == 3  # the stale member is logged too
    after = _raw(warehouse)
    assert after["transactions"] == after["customers"] == [("Z9",)]
    assert after["tombstones"] == 4  # C1 and G1: one order and one profile each, nothing more, nothing less
    assert after["log"] == (3, 1)
    assert privacy.erase_customer("Z9", warehouse, dry_run=True).member_keys == [privacy.customer_key("Z9")]


def test_an_id_the_graph_does_not_know_yet_is_erased_alone(warehouse):
    with duckdb.connect(str(warehouse.warehouse_path)) as con:
        kit.insert(con, "transactions", [_order("O4", "NEW1")], D)  # landed after the last build

    result = privacy.erase_customer("NEW1", warehouse, compact=False)

    assert result.person_id is None and result.member_keys == [privacy.customer_key("NEW1")]
    after = _raw(warehouse)
    assert after["transactions"] == [("C1",), ("G1",), ("Z9",)] and after["tombstones"] == 1
