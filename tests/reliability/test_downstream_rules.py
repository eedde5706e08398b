"""Rows valid by the contract that would break a downstream rule are quarantined at ingestion (issue #12 Deliver 1,
issue #13 item 9): no FX rate, a date before the earliest date, a return without its sale. One row never stops a
night; the base currency needs no rate."""

from __future__ import annotations

import csv
from datetime import date
from pathlib import Path

import duckdb
import pytest

from c360.config import get_settings
from c360.ingest.load import ingest
from c360.ingest.reconcile import reconcile
from c360.storage import LocalStorage

pytestmark = pytest.mark.reliability

D = date(2026, 3, 10)
HEADER = "order_id,customer_id,ordered_at,amount,currency,line_type,product_id,returned_at\n"


def q(settings, sql):
    con = duckdb.connect(str(settings.warehouse_path), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def land(settings, name, *lines, day=D):
    LocalStorage(settings.landing_uri).write_bytes(f"transactions/dt={day}/{name}", (HEADER + "\n".join(lines) + "\n").encode())


def reasons(settings):
    return dict(q(settings, "SELECT json_extract_string(record, '$.order_id'), reason FROM raw.quarantine"))


def test_dates_before_the_earliest_date_are_quarantined(c360_env, monkeypatch):
    land(c360_env, "a.csv",
         "o1,c1,1969-12-31T23:59:59Z,5,EUR,,,",
         "o2,c1,1970-01-01T00:00:00Z,5,EUR,,,",  # the first instant allowed
         "o3,c1,1996-05-01T10:00:00Z,5,USD,,,")  # old history in a foreign currency: the seed reaches back to 1970
    ingest(D, c360_env)
    assert reasons(c360_env) == {"o1": "date_out_of_range"}
    assert q(c360_env, "SELECT detail FROM raw.quarantine")[0][0] == \
        "ordered_at=1969-12-31T23:59:59Z is before C360_EARLIEST_DATE=1970-01-01"

    monkeypatch.setenv("C360_EARLIEST_DATE", "2000-01-01")
    ingest(D, get_settings())
    assert reasons(c360_env) == {"o1": "date_out_of_range", "o2": "date_out_of_range", "o3": "date_out_of_range"}
    assert reconcile(c360_env)["landed"] == 3


def test_a_currency_without_a_rate_is_quarantined_and_the_base_currency_needs_none(c360_env, monkeypatch, tmp_path):
    # a project copy whose seed has USD rates only from 2020 and no SEK at all, with SEK allowed by the contract
    seeds = tmp_path / "dbt" / "seeds"
    seeds.mkdir(parents=True)
    (seeds / "fx_rates.csv").write_text("currency_code,valid_from,eur_per_unit\nEUR,1970-01-01,1\nUSD,2020-01-01,0.9\n")
    monkeypatch.setenv("DBT_PROJECT_DIR", str(tmp_path / "dbt"))
    land(c360_env, "a.csv",
         "o1,c1,2026-03-10T10:00:00Z,5,SEK,,,",
         "o2,c1,2019-12-31T10:00:00Z,5,USD,,,",
         "o3,c1,2020-01-01T10:00:00Z,5,USD,,,",
         "o4,c1,1971-01-01T10:00:00Z,5,,,,")  # no currency = the default = the base: no rate needed
    ingest(D, get_settings())
    assert reasons(c360_env) == {"o1": "no_fx_rate", "o2": "no_fx_rate"}
    details = sorted(r[0] for r in q(c360_env, "SELECT detail FROM raw.quarantine"))
    assert details == ["no rate from SEK to EUR on 2026-03-10 in dbt_project/seeds/fx_rates.csv",
                       "no rate from USD to EUR on 2019-12-31 in dbt_project/seeds/fx_rates.csv"]

    # a USD shop: USD amounts need no rate at any date, and EUR ones now need one (via the seed's EUR and USD rows)
    monkeypatch.setenv("C360_BASE_CURRENCY", "usd")
    land(c360_env, "a.csv",
         "u1,c1,1975-03-10T10:00:00Z,5,USD,,,",
         "u2,c1,2019-03-10T10:00:00Z,5,EUR,,,",
         "u3,c1,2021-03-10T10:00:00Z,5,,,,")  # default currency follows the base currency
    ingest(D, get_settings())
    assert reasons(c360_env) == {"u2": "no_fx_rate"}
    # raw keeps what landed (no currency); dbt staging applies the default, which follows the base currency
    assert q(c360_env, "SELECT order_id, currency FROM raw.transactions ORDER BY 1") == [("u1", "USD"), ("u3", None)]
    assert get_settings().as_env()["C360_DEFAULT_CURRENCY"] == "USD"


def test_the_fx_seed_covers_every_allowed_currency_from_the_earliest_date():
    settings = get_settings()
    with open(Path(settings.dbt_project_dir) / "seeds" / "fx_rates.csv") as fh:
        first = {}
        for row in csv.DictReader(fh):
            first[row["currency_code"]] = min(first.get(row["currency_code"], "9999"), row["valid_from"])
    assert set(settings.currencies) <= set(first)
    assert all(d <= settings.earliest_date for d in first.values()), first


def test_a_return_needs_its_sale_in_raw_or_in_the_same_load(c360_env):
    land(c360_env, "a.csv",
         "s1,c1,2026-03-09T10:00:00Z,10,EUR,sale,p1,",
         day=date(2026, 3, 9))
    ingest(date(2026, 3, 9), c360_env)
    land(c360_env, "b.csv",
         "s1,c1,2026-03-09T10:00:00Z,-10,EUR,return,p1,2026-03-10T09:00:00Z",  # sale already in raw
         "s1,c1,2026-03-09T10:00:00Z,-10,EUR,return,p2,2026-03-10T09:00:00Z",  # that order never sold p2
         "s2,c2,2026-03-10T08:00:00Z,4,EUR,sale,,",
         "s2,c2,2026-03-10T08:00:00Z,-4,EUR,return,,2026-03-10T09:00:00Z",  # sale in the same load, no product
         "s3,c3,2026-03-01T08:00:00Z,-4,EUR,return,p1,2026-03-10T09:00:00Z")  # no sale of s3 anywhere
    result = ingest(D, c360_env)
    got = sorted(q(c360_env, "SELECT source_line, reason, detail FROM raw.quarantine"))
    assert got == [(3, "return_without_sale", "no sale line of order s1 for product p2 loaded or in this load"),
                   (6, "return_without_sale", "no sale line of order s3 for product p1 loaded or in this load")]
    t = result.entities["transactions"]
    assert (t.landed, t.loaded, t.quarantined) == (5, 3, 2)
    assert reconcile(c360_env) == {"files": 2, "landed": 6, "loaded": 4, "quarantined": 2}  # nothing lost
