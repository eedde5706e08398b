{{
    config(
        materialized='incremental',
        partition_by=date_partition('known_date'),
        incremental_strategy='replace_window',
        window_column='known_date',
        on_schema_change='fail'
    )
}}
{#- lookback_start() asks the warehouse for the table's latest known_date (catch-up): once per model, not per use -#}
{%- set window_start = lookback_start() %}
-- The tracking events that name an order (event_type purchase), one row per event, kept apart from the rest of the
-- tracking: a few percent of the events. int_identity_links looks up the purchase events of the orders that became
-- known in its window, however old those events are (an order can land weeks after its checkout was tracked):
-- here that lookup reads this table instead of every tracking event of the history.
-- Incremental by known_date like the models it serves: a run recomputes lookback_start() .. run_date.

select event_id, anonymous_id, order_id, occurred_at, occurred_date, known_date
from {{ ref('stg_shop__tracking_events') }}
where event_type = 'purchase'
  and order_id is not null
  and known_date <= {{ run_date() }}
  {% if is_incremental() -%}
  and known_date >= {{ window_start }}
  and {{ landed_or_occurred_since(window_start) }}
  {%- endif %}
