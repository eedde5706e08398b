{#
  Transaction lines of a landed file that an ingestion run of the recompute window (_run_date in lookback_start()
  .. run_date()) replaced or deleted to correct the data, whatever their dates: the lines it removed
  (raw.transactions_removed keeps them) and, for a replaced file, the lines of its new version. The incremental
  order models rebuild the orders and customer-days these name, so a corrected file leaves no trace downstream
  however old it is. A file loaded for the first time is not here (its lines are new data, taken in by known_date),
  so a normal night, and the nights after the first load of a whole history, rebuild only what new data touches.
  Columns: order_id, line_key, customer_id, activity_date (as in stg_shop__transactions).
#}
{% macro reloaded_transactions(window_start=none) -%}
  {%- set start = window_start if window_start is not none else lookback_start() -%}
  {%- set removed = source('shop', 'transactions_removed') -%}
  {%- for relation in [removed, source('shop', 'transactions')] %}
    select
        order_id,
        order_id || '|' || coalesce(line_id, 1)::string || '|' || lower(coalesce(line_type, 'sale'))  as line_key,
        customer_id,
        {{ utc_date("case when lower(coalesce(line_type, 'sale')) = 'return' then coalesce(returned_at, ordered_at) else ordered_at end") }}
                                                                                                       as activity_date
    from {{ relation }}
    where _run_date between {{ start }} and {{ run_date() }}
    {%- if relation != removed %}
      and _source_file in (
          select _source_file from {{ removed }} where _run_date between {{ start }} and {{ run_date() }})
    {%- endif %}
    {% if not loop.last %}union all{% endif %}
  {%- endfor %}
{%- endmacro %}
