{{
    config(
        materialized='incremental',
        incremental_strategy='replace_window',
        window_column='known_date',
        on_schema_change='fail'
    )
}}
-- Evidence that a cookie (anonymous_id) belongs to a customer: one row per cookie, customer, day of the evidence
-- and known_date. Evidence is any event carrying the customer_id (a login and everything after it) and any
-- purchase event whose order_id is a transaction of the customer (guest checkouts included).
-- Kept per known_date so the feature store can stitch with only the evidence known at its as-of date.

with events as (

    select anonymous_id, customer_id, event_type, order_id, occurred_at, occurred_date, known_date
    from {{ ref('stg_shop__tracking_events') }}
    where known_date <= {{ run_date() }}

),

-- when each order became known, and whose it is
orders as (

    select
        order_id,
        first(customer_id order by known_date, transaction_version_id)    as customer_id,
        min(known_date)                                                   as order_known_date
    from {{ ref('stg_shop__transactions') }}
    where line_type = 'sale'
    group by order_id

),

evidence as (

    select
        anonymous_id,
        customer_id,
        occurred_at,
        occurred_date,
        known_date,
        event_type = 'login'                                              as is_login,
        false                                                             as is_purchase
    from events
    where customer_id is not null
    {% if is_incremental() -%}
      and known_date >= {{ lookback_start() }}
    {%- endif %}

    union all

    select
        events.anonymous_id,
        orders.customer_id,
        events.occurred_at,
        events.occurred_date,
        greatest(events.known_date, orders.order_known_date)             as known_date,
        false                                                             as is_login,
        true                                                              as is_purchase
    from events
    inner join orders on orders.order_id = events.order_id
    where events.event_type = 'purchase'

)

select
    anonymous_id,
    customer_id,
    occurred_date                                                         as link_date,
    known_date,
    min(occurred_at)                                                      as first_linked_at,
    max(occurred_at)                                                      as last_linked_at,
    count(*)                                                              as evidence_events,
    bool_or(is_login)                                                     as has_login,
    bool_or(is_purchase)                                                  as has_purchase
from evidence
where known_date <= {{ run_date() }}
{% if is_incremental() -%}
  -- a purchase event becomes evidence when both it and its order are known, whichever came last
  and known_date >= {{ lookback_start() }}
{%- endif %}
group by anonymous_id, customer_id, occurred_date, known_date
