"""The dbt project builds on the smallest inputs (transactions only, other raw tables absent), its raw-table
fallback matches the landing contract, and `dbt docs generate` works."""

from __future__ import annotations

import json
from datetime import date

import duckdb
import pytest

from c360.config import get_settings
from c360.ingest.contract import ENTITIES, METADATA_COLUMNS
from c360.pipeline import transform
from tests import dbt_testkit as kit

pytestmark = pytest.mark.integration

RUN_DATE = date(2025, 1, 20)


@pytest.fixture(scope="module")
def transactions_only(tmp_path_factory):
    """A warehouse holding only raw.transactions (the other raw tables do not exist), built for 2025-01-20."""
    root = tmp_path_factory.mktemp("dbt_tx_only")
    with pytest.MonkeyPatch.context() as mp:
        kit.configure_env(mp, root)
        with kit.connect() as con:
            kit.create_raw_tables(con, entities=("transactions",))
            # the contract's smallest input: customer_id, order_id, ordered_at, amount
            kit.insert(con, "transactions", [
                {"order_id": "A", "customer_id": "X", "ordered_at": "2025-01-03T10:00:00Z", "amount": 10},
                {"order_id": "B", "customer_id": "X", "ordered_at": "2025-01-15T10:00:00Z", "amount": 30},
                {"order_id": "C", "customer_id": "Y", "ordered_at": "2025-01-20T23:30:00Z", "amount": 5},
            ], "2025-01-20")
        result = transform.build(RUN_DATE, get_settings())
        # nothing scored yet (the first night before training): the score part builds on empty scores
        result_scores = transform.build_scores(RUN_DATE, get_settings())
        yield {"result": result, "result_scores": result_scores, "settings": get_settings(), "root": root}


def fetch(sql: str) -> list[tuple]:
    with duckdb.connect(str(get_settings().warehouse_path), read_only=True) as con:
        return con.execute(sql).fetchall()


def test_transactions_only_input_builds(transactions_only):
    assert transactions_only["result"].success and transactions_only["result_scores"].success
    rows = fetch(
        "select customer_id, orders_count, has_profile, has_tracking, sessions_30d, product_views_90d, "
        "days_since_last_visit, first_touch_channel, favourite_category from feature_store.customer_features "
        "order by customer_id"
    )
    assert rows == [
        ("X", 2, False, False, 0, 0, None, None, "unknown"),
        ("Y", 1, False, False, 0, 0, None, None, "unknown"),
    ]
    assert fetch("select count(*) from marts.fct_sessions") == [(0,)]
    assert fetch("select count(*) from marts.customer_360") == [(2,)]
    # likes vs buys: nothing viewed, and without product ids nothing to compare
    assert fetch(
        "select customer_id, top_viewed_category_90d, top_bought_category, viewed_products_30d, "
        "viewed_not_bought_products_30d, cart_abandon_products_30d, view_to_buy_rate_90d from marts.customer_360 "
        "order by customer_id"
    ) == [("X", None, None, 0, 0, 0, None), ("Y", None, None, 0, 0, 0, None)]
    # no scores yet: the next-best-action mart exists, empty
    assert fetch("select count(*) from marts.customer_next_best_action") == [(0,)]


def test_missing_raw_tables_are_created_with_the_contract_columns(transactions_only):
    for entity in ENTITIES.values():
        cols = fetch(
            "select column_name, data_type from information_schema.columns "
            f"where table_schema = 'raw' and table_name = '{entity.table}' order by ordinal_position"
        )
        expected = [(c.name, c.type) for c in (*entity.columns, *METADATA_COLUMNS)]
        normalized = [(n, t.replace("TIMESTAMP WITH TIME ZONE", "TIMESTAMPTZ")) for n, t in cols]
        assert normalized == expected, f"raw.{entity.table} differs from c360/ingest/contract.py"


def test_docs_generate(transactions_only):
    settings = transactions_only["settings"]
    transform.run_dbt(["docs", "generate"], RUN_DATE, settings)
    target = transactions_only["root"] / "dbt_target"
    catalog = json.loads((target / "catalog.json").read_text())
    manifest = json.loads((target / "manifest.json").read_text())
    assert "model.c360.customer_360" in catalog["nodes"]
    # every model documents its grain
    for node in manifest["nodes"].values():
        if node["resource_type"] == "model":
            assert "grain" in node["description"].lower(), f"{node['name']} does not state its grain"


def test_empty_warehouse_builds(tmp_path, monkeypatch):
    """Before the first ingestion: no raw schema at all. Everything builds empty."""
    kit.configure_env(monkeypatch, tmp_path)
    result = transform.run_dbt(kit.BUILD_MODELS, None, get_settings())
    assert result.success
    assert fetch("select count(*) from feature_store.customer_features") == [(0,)]


def test_feature_store_doc_lists_exactly_the_contract_columns():
    """docs/feature_store.md is what the ML code reads: it must name every column of the enforced contract."""
    import re

    import yaml

    root = get_settings().dbt_project_dir
    spec = yaml.safe_load((root / "models" / "feature_store" / "_feature_store__models.yml").read_text())
    contract = next(m for m in spec["models"] if m["name"] == "customer_features")
    columns = {c["name"] for c in contract["columns"]}
    doc = (root.parent / "docs" / "feature_store.md").read_text()
    section = doc[doc.index("## Features") : doc.index("## Labels")]
    documented = set()
    for line in section.splitlines():
        if line.startswith("| `"):
            documented |= set(re.findall(r"`(\w+)`", line.split("|")[1]))
    assert documented == columns
