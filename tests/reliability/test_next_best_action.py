"""Next-best action under reruns and hostile settings: a rerun of a night replaces only that night (one row per
customer, the other nights intact, the contact cap still read from the earlier nights), and a rule value that is
not a number never reaches the SQL (the dbt vars are inlined into it).

Only the mart is run, over hand-made input tables, so each test takes seconds.
"""

from __future__ import annotations

from datetime import date

import duckdb
import pytest

from c360.config import get_settings
from c360.pipeline import transform
from c360.pipeline.transform import DbtRunError
from tests import dbt_testkit as kit

pytestmark = pytest.mark.reliability

D1, D2 = date(2025, 3, 1), date(2025, 3, 2)
MART = ["run", "-s", "customer_next_best_action"]


def make_inputs(con) -> None:
    """The mart's inputs as plain tables where dbt puts them: C1 at risk and valuable, consenting on both nights;
    C2 likewise but withdraws consent on D2."""
    con.execute("""
        create schema if not exists marts; create schema if not exists feature_store;
        create or replace table marts.customer_scores as
            select * from (values
                (date '2025-03-01', 'C1', 0.8, 500.0), (date '2025-03-01', 'C2', 0.9, 300.0),
                (date '2025-03-02', 'C1', 0.8, 500.0), (date '2025-03-02', 'C2', 0.9, 300.0))
                as s(as_of_date, customer_id, churn_probability, predicted_value_eur),
            lateral (select 'run-' || as_of_date::varchar as run_id, '3' as churn_model_version,
                            '2' as clv_model_version, cast(null as varchar) as recommender_model_version,
                            as_of_date as feature_snapshot_date,
                            cast(null as varchar) as churn_reason_1, cast(null as varchar) as churn_reason_2,
                            cast(null as varchar) as churn_reason_3);
        create or replace table feature_store.customer_features as
            select * from (values
                (date '2025-03-01', 'C1', true), (date '2025-03-01', 'C2', true),
                (date '2025-03-02', 'C1', true), (date '2025-03-02', 'C2', false))
                as f(as_of_date, customer_id, marketing_consent),
            lateral (select 3 as orders_count, 20 as days_since_last_order, 60.0 as avg_order_value_eur,
                            cast(null as varchar) as top_viewed_category_90d, cast(null as varchar) as top_bought_category,
                            cast(null as boolean) as top_viewed_category_bought, 0 as viewed_not_bought_products_30d);
        create or replace table marts.customer_recommendations (as_of_date date, customer_id varchar, rank integer,
                                                                product_id varchar);
        create or replace table marts.dim_products (product_id varchar, category varchar);
    """)


def actions() -> list[tuple]:
    with duckdb.connect(str(get_settings().warehouse_path), read_only=True) as con:
        return con.execute("select as_of_date, customer_id, action, suppressed_by, previous_action_date "
                           "from marts.customer_next_best_action order by all").fetchall()


@pytest.fixture
def warehouse(tmp_path, monkeypatch):
    kit.configure_env(monkeypatch, tmp_path)
    with kit.connect() as con:
        make_inputs(con)
    return get_settings()


def test_rerunning_a_night_replaces_it_and_keeps_the_other_nights(warehouse):
    transform.run_dbt(MART, D1, warehouse)
    transform.run_dbt(MART, D2, warehouse)
    decided = actions()
    assert decided == [
        (D1, "C1", "retain", None, None), (D1, "C2", "retain", None, None),
        (D2, "C1", "none", "contact_cap", D1), (D2, "C2", "none", "no_consent", D1),
    ]
    # a rerun of the earlier night, then of the later one: same rows, no duplicates, the cap still applies
    transform.run_dbt(MART, D1, warehouse)
    assert actions() == decided
    transform.run_dbt(MART, D2, warehouse)
    assert actions() == decided
    # scores withdrawn for D2 and the night rerun: D2 is emptied, D1 (the cap's history) untouched
    with kit.connect() as con:
        con.execute("delete from marts.customer_scores where as_of_date = date '2025-03-02'")
    transform.run_dbt(MART, D2, warehouse)
    assert actions() == decided[:2]


def test_a_rule_that_is_not_a_number_stops_the_model_naming_it(warehouse):
    transform.run_dbt(MART, D1, warehouse)
    before = actions()
    for var, value in [("nba_uplift_retain", "0.1); drop table marts.customer_scores; --"),
                       ("nba_contact_cap_days", "14 days")]:
        with pytest.raises(DbtRunError, match=f"dbt var '{var}' must be a"):
            transform.run_dbt(MART, D2, warehouse, extra_vars={var: value})
        assert actions() == before  # nothing written, the inputs still there
        with kit.connect() as con:
            assert con.execute("select count(*) from marts.customer_scores").fetchone() == (4,)
