{{
    config(
        materialized='incremental',
        partition_by=date_partition('known_date'),
        incremental_strategy='replace_window',
        window_column='known_date',
        replace_reloaded={'interaction_id': "'order:' || line_key"},
        on_schema_change='fail'
    )
}}
{#- lookback_start() asks the warehouse for the table's latest known_date (catch-up): once per model, not per use -#}
{%- set window_start = lookback_start() %}
-- The recommender's input: one row per customer-product interaction (a completed purchase line, an add-to-cart
-- or a product view), with the date it became known. Exported to Parquet (c360.transform) for Spark; the
-- contract is in docs/models.md. Incremental by known_date: a run recomputes the window
-- lookback_start() .. run_date, so a reader filtering known_date <= D always sees the same rows for D.
--
-- Purchases are keyed by order line and dated by the line's first known version (a re-sent line does not add a
-- second purchase). Tracking events are attributed with the same stitching rules as sessions (login, then the
-- cookie's next or previous identified customer, never through a shared device) using the links known at
-- run_date; events of earlier windows are not re-attributed by later logins.

with purchases as (

    -- int_order_lines keeps each line's first known date (min over its versions, recomputed whenever its order
    -- changes), so the night reads one column of that table instead of grouping every version ever landed
    select
        'order:' || line_key                                              as interaction_id,
        customer_id,
        product_id,
        'purchase'                                                        as event_type,
        ordered_at                                                        as event_time,
        first_known_date                                                  as known_date
    from {{ ref('int_order_lines') }}
    where line_type = 'sale'
      and status = 'completed'
      and customer_id is not null
      and product_id is not null
      {% if is_incremental() -%}
      and (first_known_date between {{ window_start }} and {{ run_date() }}
        -- and, whatever their dates, the lines of a landed file replaced or deleted since (replace_reloaded deletes
        -- their old rows: a line the corrected file removed is no longer an interaction)
        or (first_known_date <= {{ run_date() }}
            and line_key in (select line_key from ({{ reloaded_transactions(window_start) }}))))
      {%- else %}
      and first_known_date <= {{ run_date() }}
      {%- endif %}

),

product_events as (

    select
        event_id,
        event_type,
        product_id,
        anonymous_id,
        occurred_at                                                       as session_start_at,
        customer_id                                                       as logged_in_customer_id,
        known_date
    from {{ ref('stg_shop__tracking_events') }}
    where event_type in ('product_view', 'add_to_cart')
      and product_id is not null
      {% if is_incremental() -%}
      and known_date between {{ window_start }} and {{ run_date() }}
      and {{ landed_or_occurred_since(window_start) }}
      {%- else -%}
      and known_date <= {{ run_date() }}
      {%- endif %}

),

links as (

    select anonymous_id, customer_id, first_linked_at, last_linked_at
    from {{ ref('int_identity_links') }}
    where known_date <= {{ run_date() }}

),

{{ stitch_sessions('product_events', 'links', 'attributed') }}

select interaction_id, customer_id, product_id, event_type, event_time, known_date
from purchases

union all

select
    'event:' || event_id                                                  as interaction_id,
    customer_id,
    product_id,
    event_type,
    session_start_at                                                      as event_time,
    known_date
from attributed
where customer_id is not null
