{{
    config(
        materialized='incremental',
        partition_by=date_partition('known_date'),
        incremental_strategy='replace_window',
        window_column='known_date',
        on_schema_change='fail'
    )
}}
-- depends_on: {{ ref('int_purchase_events') }}
{#- (read in the incremental branch only: dbt needs the edge declared for the first, full build's order too) #}
{#- lookback_start() asks the warehouse for the table's latest known_date (catch-up): once per model, not per use -#}
{%- set window_start = lookback_start() %}
-- Evidence that a cookie (anonymous_id) belongs to a customer: one row per cookie, customer, day of the evidence
-- and known_date. Evidence is any event carrying the customer_id (a login and everything after it) and any
-- purchase event whose order_id is a transaction of the customer (guest checkouts included).
-- Kept per known_date so the feature store can stitch with only the evidence known at its as-of date.

-- Incremental: only the evidence whose known_date falls in the run's window is recomputed, and only the rows that
-- can give it are read: events that became known in the window (logins, identified events, purchases) and the
-- purchase events of the orders that became known in the window. Older events are not read again.

with events as (

    select event_id, anonymous_id, customer_id, event_type, order_id, occurred_at, occurred_date, known_date
    from {{ ref('stg_shop__tracking_events') }}
    where known_date <= {{ run_date() }}
    {% if is_incremental() -%}
      and known_date >= {{ window_start }}
      and {{ landed_or_occurred_since(window_start) }}
    {%- endif %}

),

{% if is_incremental() -%}
-- orders that became known in the window: their purchase events, however old, become evidence now
new_orders as (

    select distinct order_id
    -- unranked and pre-filtered on the raw columns: the staging view would type every version ever landed first
    from ({{ transaction_lines(raw_where=transactions_known_since(window_start)) }})
    where line_type = 'sale'
      and known_date between {{ window_start }} and {{ run_date() }}

),

purchase_events as (

    select event_id, anonymous_id, order_id, occurred_at, occurred_date, known_date
    from events
    where event_type = 'purchase'

    -- by event_id: an event both known in the window and of a new order counts once, two equal events twice
    union

    select event_id, anonymous_id, order_id, occurred_at, occurred_date, known_date
    from {{ ref('int_purchase_events') }}
    where known_date <= {{ run_date() }}
      and order_id in (select order_id from new_orders)

),
{%- else -%}
purchase_events as (

    select event_id, anonymous_id, order_id, occurred_at, occurred_date, known_date
    from events
    where event_type = 'purchase'

),
{%- endif %}

-- when each order became known, and whose it is (all its versions: the first one decides)
orders as (

    select
        order_id,
        -- the tie-break is transaction_version_id's definition, written out so that it is computed after the
        -- filter, for the few versions of the night's orders, not for every version in the history
        {{ first_by('customer_id', "known_date, md5(source_file || ':' || source_line::string)") }}    as customer_id,
        min(known_date)                                                   as order_known_date
    from (
        select order_id, customer_id, known_date, source_file, source_line
        {% if is_incremental() -%}
        -- the versions of the night's orders only, picked in the raw scan
        from ({{ transaction_lines(raw_where='order_id in (select order_id from purchase_events)') }})
        {%- else -%}
        from {{ ref('stg_shop__transactions') }}
        {%- endif %}
        where line_type = 'sale'
    ) as order_versions
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

    union all

    select
        purchase_events.anonymous_id,
        orders.customer_id,
        purchase_events.occurred_at,
        purchase_events.occurred_date,
        greatest(purchase_events.known_date, orders.order_known_date)    as known_date,
        false                                                             as is_login,
        true                                                              as is_purchase
    from purchase_events
    inner join orders on orders.order_id = purchase_events.order_id

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
  and known_date >= {{ window_start }}
{%- endif %}
group by anonymous_id, customer_id, occurred_date, known_date
