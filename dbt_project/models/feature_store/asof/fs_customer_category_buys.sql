{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='customer_id',
        on_schema_change='fail'
    )
}}
-- depends_on: {{ ref('int_customer_daily_orders') }}
-- Running lifetime purchase lines per customer id (not per person: fs_customer_likes_asof applies the identity
-- graph) and product category, the category of the product version known at computed_as_of, the run date that last
-- recomputed the id. The purchases are those fs_customer_likes_asof counts: feature_store.interactions' purchase
-- lines known by then and dated before its end. A night recomputes only the ids whose purchases may have moved
-- since the table's latest computed_as_of (below); every other id's rows are still what a full build would give.
-- So the snapshot no longer groups every purchase line of the history each night (#16).
--
-- An id recomputed without purchases in a known category keeps one row with category null and buys 0, which
-- replaces its old rows. A run for a date before the table's latest computed_as_of (a backfill of an older
-- snapshot) recomputes every id, as fs_customer_order_totals does.

{%- set since = running_totals_since() %}

with products as (

    {{ products_known_at(run_date()) }}

),

{% if since is not none -%}
-- products whose category at the run date is not the one at the table's date: their buyers' counts move
recategorised as (

    select coalesce(now_known.product_id, then_known.product_id)            as product_id
    from products as now_known
    full join ({{ products_known_at(date_literal(since)) }}) as then_known
        on then_known.product_id = now_known.product_id
    where now_known.category is distinct from then_known.category

),

touched as (

    -- every change of an order line (new, late, re-sent, cancelled, moved to another customer or day) gives the
    -- customer-days of all its versions a new state (int_customer_daily_orders), and interactions' purchases
    -- follow the lines
    {{ ids_with_order_changes_since(since) }}
    union
    -- buyers of a re-categorised product, and purchases known before the table's date but dated after its end
    select customer_id
    from {{ ref('interactions') }}
    where event_type = 'purchase'
      and known_date <= {{ run_date() }}
      and (product_id in (select product_id from recategorised)
           or event_time >= {{ day_start_utc(date_literal(since) ~ ' + 1') }})

),
{%- endif %}

buys as (

    select purchases.customer_id, products.category, count(*) as buys
    from {{ ref('interactions') }} as purchases
    inner join products on products.product_id = purchases.product_id
    where purchases.event_type = 'purchase'
      and purchases.known_date <= {{ run_date() }}
      and purchases.event_time < {{ day_start_utc(run_date() ~ ' + 1') }}
      and products.category is not null
      {%- if since is not none %}
      and purchases.customer_id in (select customer_id from touched)
      {%- endif %}
    group by purchases.customer_id, products.category

),

-- the ids of the night: buys has a row per id and category
recomputed as (

    select distinct customer_id from ({{ recomputed_ids(since, 'touched', 'buys') }}) as ids

)

select
    recomputed.customer_id,
    buys.category,
    coalesce(buys.buys, 0)                                                    as buys,
    {{ run_date() }}                                                          as computed_as_of
from recomputed
left join buys on buys.customer_id = recomputed.customer_id
