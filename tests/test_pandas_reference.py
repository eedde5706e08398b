"""The pandas reference implementation of the feature snapshot (bench/pandas_features.py) agrees with dbt.

A tiny generated shop with five times the usual dirt (re-sent lines, test orders, late events, duplicates) is
ingested and built the way the nightly does it: history up to ten days before the end, then a catch-up night,
then two past snapshots backfilled. At each of those dates every implemented column of the pandas snapshot must
equal dbt's (money to the cent, ratios to float noise) - dbt incrementally from its intermediate tables, pandas
from scratch from the raw tables. The hand-written edge cases of tests/dbt_testkit.py (shared device, campaign
split, late event, re-sent line in another currency, consent withdrawal, a transactions-only customer) and a
transactions-only warehouse must match too. A negative control checks the comparison does notice a difference.
"""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from bench import pandas_features as pf
from c360.config import get_settings
from c360.ingest.load import ingest
from c360.pipeline import transform
from c360dev.generate.core import generate
from c360dev.generate.dirt import DirtConfig
from c360dev.generate.identity import add_identity_cases
from tests import dbt_testkit as kit

pytestmark = pytest.mark.integration

START = date(2025, 3, 1)
DAYS = 75
LAST = START + timedelta(days=DAYS - 1)
HISTORY_END = LAST - timedelta(days=10)
BACKFILLED = [START + timedelta(days=20), START + timedelta(days=45)]


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    root = tmp_path_factory.mktemp("pandas_reference")
    with pytest.MonkeyPatch.context() as mp:
        kit.configure_env(mp, root)
        mp.setenv("LANDING_URI", str(root / "landing"))
        settings = get_settings()
        generate(settings.landing_uri, customers=500, days=DAYS, seed=11, start=START.isoformat(),
                 truth_dir=root / "truth", dirt=DirtConfig(scale=5))
        # second accounts and guest checkouts of existing customers: persons of several customer ids, whose
        # snapshot rows sum them all (the reference re-keys with the warehouse's person keys)
        add_identity_cases(settings.landing_uri, root / "truth", seed=11, start=START.isoformat(), days=DAYS,
                           duplicate_rate=0.05, guest_rate=0.05)
        ingest(HISTORY_END, settings)
        transform.run_dbt(kit.BUILD_MODELS, HISTORY_END, settings)
        ingest(LAST, settings)
        transform.run_dbt(kit.BUILD_MODELS, LAST, settings)
        for day in BACKFILLED:
            transform.run_dbt(pf.DBT_FEATURE_COMMAND, day, settings)
        yield {"settings": settings, "warehouse": settings.warehouse_path}


def assert_all_columns_match(result: dict) -> None:
    assert result["only_in_dbt"] == [] and result["only_in_reference"] == []
    problems = {c: r["examples"] for c, r in result["columns"].items() if r["mismatches"]}
    assert not problems, f"pandas and dbt differ on {sorted(problems)}: {problems}"
    assert result["columns_implemented"] == len(pf.FEATURE_COLUMNS) == 56
    # sums of money are exact to the cent (the tolerance is only for divisions rounded from a float)
    for column in ("gross_revenue_eur", "returned_revenue_eur", "net_revenue_eur", "net_revenue_eur_90d"):
        assert result["columns"][column]["max_abs_diff"] < 0.005, column
    assert result["all_match"]


@pytest.mark.parametrize("day", [LAST, HISTORY_END, *BACKFILLED], ids=str)
def test_reference_equals_dbt_snapshot(shop, day):
    result = pf.compare(shop["warehouse"], day)
    assert result["rows_dbt"] > 100
    assert_all_columns_match(result)


def test_the_reference_covers_persons_of_several_customer_ids(shop):
    """The generated households (two accounts on one device) are persons of two customer ids: their snapshot row
    sums both, and the comparison above checked those sums too."""
    keys = pf.person_keys(shop["warehouse"])
    merged = keys[keys != keys.index]
    assert len(merged) >= 1
    snapshot = pf.dbt_snapshot(shop["warehouse"], LAST)
    assert set(merged.index).isdisjoint(snapshot["customer_id"])  # absorbed into their person's row
    assert (snapshot["customer_id_count"] > 1).sum() >= 1


BASE_DATES = [date(2025, 1, 5), date(2025, 1, 10), date(2025, 1, 14), date(2025, 1, 20)]


def test_reference_equals_dbt_on_the_hand_written_edge_cases(tmp_path, monkeypatch):
    kit.configure_env(monkeypatch, tmp_path)
    with kit.connect() as con:
        kit.seed_base(con)
    settings = get_settings()
    transform.run_dbt(kit.BUILD_MODELS, BASE_DATES[-1], settings)
    for day in BASE_DATES[:-1]:
        transform.run_dbt(pf.DBT_FEATURE_COMMAND, day, settings)
    for day in BASE_DATES:
        result = pf.compare(settings.warehouse_path, day)
        assert result["rows_dbt"] >= 2, day
        assert_all_columns_match(result)
    features = pf.reference_features(settings.warehouse_path, BASE_DATES[-1]).set_index("customer_id")
    assert not features.loc["C4", "has_profile"]
    assert features.loc["C1", "sessions_30d"] > 0


def test_reference_equals_dbt_with_transactions_only(tmp_path, monkeypatch):
    kit.configure_env(monkeypatch, tmp_path)
    with kit.connect() as con:
        kit.create_raw_tables(con, entities=("transactions",))
        for dt, rows in kit.TRANSACTIONS.items():
            kit.insert(con, "transactions", rows, dt)
    transform.run_dbt(kit.BUILD_MODELS, BASE_DATES[-1], get_settings())
    assert_all_columns_match(pf.compare(get_settings().warehouse_path, BASE_DATES[-1]))


def test_the_snapshot_exercises_every_feature_group(shop):
    features = pf.reference_features(shop["warehouse"], LAST)
    assert (features["orders_count"] > 1).any() and (features["returned_revenue_eur"] > 0).any()
    assert (features["cancelled_orders_count"] > 0).any() and features["favourite_category"].notna().any()
    assert (features["sessions_90d"] > 0).any() and features["first_touch_channel"].nunique() > 3
    assert features["marketing_consent"].any() and features["rfm_segment"].nunique() > 4
    assert (features["bgnbd_frequency"] > 0).any() and (features["abandoned_carts_90d"] > 0).any()


def test_comparison_notices_a_difference(shop):
    reference = pf.reference_features(shop["warehouse"], LAST)
    snapshot = pf.dbt_snapshot(shop["warehouse"], LAST)
    buyer = snapshot.index[snapshot["orders_count"] > 0][0]
    snapshot.loc[buyer, "net_revenue_eur"] = float(snapshot.loc[buyer, "net_revenue_eur"]) + 0.02
    snapshot.loc[buyer, "last_touch_channel"] = "carrier_pigeon"
    snapshot = snapshot.drop(index=snapshot.index[-1])
    result = pf.compare_frames(reference, snapshot)
    assert not result["all_match"]
    assert {"net_revenue_eur", "last_touch_channel"} <= set(result["mismatched_columns"])
    assert result["only_in_reference_count"] == 1
    assert result["columns"]["net_revenue_eur"]["max_abs_diff"] == pytest.approx(0.02)


def test_timing_and_feature_build_comparison(shop):
    timing = pf.time_reference(shop["warehouse"], LAST, repeat=1)
    assert timing["rows"] > 100 and timing["median_seconds"] > 0
    assert timing["raw_rows"]["transactions"] > 0
    both = pf.feature_build_comparison(shop["warehouse"], LAST, repeat=1, settings=shop["settings"])
    assert both["equal"] is True and both["mismatched_columns"] == []
    assert both["dbt"]["median_seconds"] > 0 and both["pandas_over_dbt"] > 0
    assert "customer_features" in both["dbt"]["models"]
    assert both["rows"]["dbt"] == both["rows"]["pandas"]
