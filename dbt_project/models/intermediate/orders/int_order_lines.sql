{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='order_id',
        on_schema_change='fail',
        pre_hook="{% if is_incremental() %}{{ delete_rows_missing_from(this, 'order_id', source('shop', 'transactions'), candidates=reloaded_transactions()) }}{% endif %}"
    )
}}
-- The pre-hook removes orders that vanished from raw (their landed file was deleted or replaced: ingestion
-- removed its rows): delete+insert only rebuilds orders that still have lines, so they would stay forever.
-- Orders with a line in a landed file that a recent ingestion run replaced or deleted are rebuilt too, whatever
-- their dates (macros/reloaded_transactions.sql): delete+insert by order_id then drops the lines that file removed.
-- One row per order line as known today (latest version), sales and returns, with the amount in EUR and the
-- product's current category. Incremental per order: orders with a line version that became known in the run's
-- window are rebuilt, and those with a line of a product re-categorised in the window.

{#- lookback_start() asks the warehouse for the table's latest known_date (catch-up): once per model, not per use -#}
{%- set window_start = lookback_start() %}

-- each product's latest version: the lines carry its current category
with products as (

    select product_id, category
    from {{ ref('stg_shop__products') }}
    where is_latest

),

changed_orders as (

    {% if is_incremental() -%}
    select distinct order_id
    -- unranked and pre-filtered on the raw columns: the staging view would type every version ever landed first
    from ({{ transaction_lines(raw_where=transactions_known_since(window_start)) }})
    where known_date between {{ window_start }} and {{ run_date() }}
    -- and orders of a landed file replaced or deleted since, whatever their dates (a line it removed must go)
    union
    select order_id from ({{ reloaded_transactions(window_start) }})
    -- and orders with a line whose product a version known in the window filed under another category: the
    -- lines carry the product's current category
    union
    select stored.order_id
    from {{ this }} as stored
    inner join products on products.product_id = stored.product_id
    where stored.product_id in (
            select product_id from {{ ref('stg_shop__products') }}
            where known_date between {{ window_start }} and {{ run_date() }})
      and stored.category <> coalesce(products.category, 'unknown')
    {%- else -%}
    select distinct order_id from {{ ref('stg_shop__transactions') }}
    {%- endif %}

),

-- the versions of the changed orders' lines, ranked among themselves (not the whole history: a line's versions
-- all share its order). A full build ranks everything, as the staging view does.
versions as (

    {% if is_incremental() -%}
    select * from ({{ transaction_versions(raw_where='order_id in (select order_id from changed_orders)') }})
    {%- else -%}
    select * from {{ ref('stg_shop__transactions') }}
    {%- endif %}

),

lines as (

    select *
    from versions
    where is_latest
      and not is_test

),

version_counts as (

    select
        line_key,
        count(*)                                                          as version_count,
        -- the day the line's first version became known: the day interactions dates a purchase
        min(known_date)                                                   as first_known_date
    from versions
    group by line_key

)

select
    lines.line_key,
    lines.order_id,
    lines.line_id,
    lines.line_type,
    lines.customer_id,
    lines.product_id,
    coalesce(products.category, 'unknown')                                as category,
    lines.quantity,
    lines.unit_price,
    lines.discount,
    lines.amount,
    lines.currency,
    -- amount_eur keeps its name: it is the amount in the base currency (C360_BASE_CURRENCY, default EUR)
    cast({{ to_base_currency('lines.amount', 'lines.currency') }} as decimal(18, 4)) as amount_eur,
    lines.status,
    lines.channel,
    lines.ordered_at,
    lines.order_date,
    lines.returned_at,
    lines.event_at,
    lines.activity_date,
    lines.known_date,
    lines.landed_date,
    version_counts.version_count,
    version_counts.first_known_date
from lines
{{ fx_asof_join('lines', 'currency', 'activity_date') }}
left join products on products.product_id = lines.product_id
left join version_counts on version_counts.line_key = lines.line_key
