{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='order_id',
        on_schema_change='fail',
        pre_hook="{% if is_incremental() %}{{ delete_rows_missing_from(this, 'order_id', ref('int_order_lines'), candidates=reloaded_transactions()) }}{% endif %}"
    )
}}
-- The pre-hook drops orders whose lines vanished from int_order_lines (a landed file deleted or replaced).
-- One row per order: what was sold, what came back, and the net revenue in EUR. A cancelled order earns nothing.
-- Incremental per order, from the order lines rebuilt in this run.

with lines as (

    select *
    from {{ ref('int_order_lines') }}
    {% if is_incremental() -%}
    where order_id in (
        select order_id from {{ ref('int_order_lines') }}
        where known_date between {{ lookback_start() }} and {{ run_date() }}
        -- and orders of a landed file replaced or deleted since, whatever their dates
        union
        select order_id from ({{ reloaded_transactions() }})
    )
    {%- endif %}

),

orders as (

    select
        order_id,
        {{ first_by('customer_id', 'line_type desc, line_id') }}                                    as customer_id,
        min(ordered_at)                                                                         as ordered_at,
        -- an order is cancelled when none of its sale lines stands
        coalesce(bool_and(status = 'cancelled') filter (where line_type = 'sale'), false)       as is_cancelled,
        {{ first_by('currency', 'line_type desc, line_id') }}                                        as currency,
        {{ first_by('channel', 'line_type desc, line_id', filter='channel is not null') }}      as channel,
        count(*) filter (where line_type = 'sale')                                              as sale_lines,
        coalesce(sum(coalesce(quantity, 1)) filter (where line_type = 'sale' and status = 'completed'), 0)
                                                                                                as items_count,
        coalesce(sum(amount) filter (where line_type = 'sale' and status = 'completed'), 0)     as gross_revenue,
        coalesce(sum(amount_eur) filter (where line_type = 'sale' and status = 'completed'), 0) as gross_revenue_eur,
        coalesce(sum(-amount_eur) filter (where line_type = 'return' and status = 'completed'), 0)
                                                                                                as returned_revenue_eur,
        coalesce(sum(abs(coalesce(quantity, 1))) filter (where line_type = 'return' and status = 'completed'), 0)
                                                                                                as returned_items,
        min(event_at) filter (where line_type = 'return' and status = 'completed')              as first_returned_at,
        max(known_date)                                                                         as known_date
    from lines
    group by order_id

)

select
    order_id::string                                              as order_id,
    customer_id::string                                           as customer_id,
    ordered_at::{{ type_timestamptz() }}                                        as ordered_at,
    {{ utc_date('ordered_at') }}::date                             as order_date,
    (case when is_cancelled then 'cancelled' else 'completed' end)::string as order_status,
    is_cancelled::boolean                                          as is_cancelled,
    currency::string                                              as currency,
    channel::string                                               as channel,
    sale_lines::integer                                            as sale_lines,
    items_count::integer                                           as items_count,
    gross_revenue::decimal(18, 2)                                  as gross_revenue,
    gross_revenue_eur::decimal(18, 2)                              as gross_revenue_eur,
    returned_revenue_eur::decimal(18, 2)                           as returned_revenue_eur,
    (gross_revenue_eur - returned_revenue_eur)::decimal(18, 2)     as net_revenue_eur,
    returned_items::integer                                        as returned_items,
    (returned_revenue_eur > 0 or returned_items > 0)::boolean      as has_return,
    first_returned_at::{{ type_timestamptz() }}                                 as first_returned_at,
    known_date::date                                               as known_date
from orders
