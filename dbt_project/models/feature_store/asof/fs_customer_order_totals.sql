{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='customer_id',
        on_schema_change='fail'
    )
}}
-- Running lifetime order totals, one row per customer id (not per person: the identity graph is applied by
-- fs_customer_orders_asof), as of computed_as_of, the run date that last recomputed the row. A night recomputes only
-- the customer ids whose customer-day states changed since the table's latest computed_as_of (new and late orders,
-- returns, cancellations, corrections: int_customer_daily_orders' known_date) or that a corrected landed file touched
-- (reloaded_transactions); every other row is still what a full build would give. So the night reads the changed
-- customers' states instead of every customer's whole history (#16, docs/scale.md "Nightly cost and history").
--
-- A recomputed id whose states are all gone (a corrected file removed its only order) keeps a row with has_orders
-- false, which replaces its old figures. A run for a date before the table's latest computed_as_of (a backfill of an
-- older snapshot) recomputes every row as of that date, stored rows without states then included as has_orders
-- false; the next nights go on from there.

{%- set since = running_totals_since() %}

with

{% if since is not none -%}
touched as (

    {{ ids_with_order_changes_since(since) }}

),
{%- endif %}

member_states as (

    {{ latest_customer_day_states(
        'customer_id in (select customer_id from touched)' if since is not none else 'true') }}

),

totals as (

    {{ order_lifetime_totals('member_states') }}

),

recomputed as (

    {{ recomputed_ids(since, 'touched', 'totals') }}

)

select
    recomputed.customer_id,
    {{ run_date() }}                                                            as computed_as_of,
    totals.customer_id is not null                                              as has_orders,
    {%- for column in order_total_columns() %}
    totals.{{ column }}{% if not loop.last %},{% endif %}
    {%- endfor %}
from recomputed
left join totals on totals.customer_id = recomputed.customer_id
