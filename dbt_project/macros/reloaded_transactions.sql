{#
  Transaction lines whose landed file was (re)loaded or removed by an ingestion run of the recompute window
  (_run_date in lookback_start() .. run_date()): the new lines of the window, and - whatever their dates - the
  lines of a landed file that was replaced or deleted to correct the data (raw.transactions_removed holds the
  removed ones). The incremental order models rebuild the orders and customer-days these name, so a corrected file
  leaves no trace downstream however old it is, while a normal night still only rebuilds what its new data touches.
  Columns: order_id, line_key, customer_id, activity_date (as in stg_shop__transactions).
#}
{% macro reloaded_transactions(window_start=none) -%}
  {%- set start = window_start if window_start is not none else lookback_start() -%}
  {%- for relation in [source('shop', 'transactions'), source('shop', 'transactions_removed')] %}
    select
        order_id,
        order_id || '|' || coalesce(line_id, 1)::varchar || '|' || lower(coalesce(line_type, 'sale'))  as line_key,
        customer_id,
        {{ utc_date("case when lower(coalesce(line_type, 'sale')) = 'return' then coalesce(returned_at, ordered_at) else ordered_at end") }}
                                                                                                       as activity_date
    from {{ relation }}
    where _run_date between {{ start }} and {{ run_date() }}
    {% if not loop.last %}union all{% endif %}
  {%- endfor %}
{%- endmacro %}
