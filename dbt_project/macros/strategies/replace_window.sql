{#
  Incremental strategy `replace_window`: delete the target rows whose `window_column` lies in the run's
  recompute window, then insert what the model produced for that window.

  The window is [run_date - lookback_days, run_date] (or open-ended when config `window_end = 'open'`).
  Unlike delete+insert on a unique key, it also removes rows that the recomputation no longer produces
  (a session merged away by a late event), so rerunning a date always gives the same table.
  The model SQL must produce exactly the rows of that window (use lookback_start() / run_date()).
  Config `replace_reloaded` (a list of columns of macros/reloaded_transactions.sql, e.g. [customer_id, activity_date],
  or a mapping {target column: SQL over those columns}, e.g. {interaction_id: "'order:' || line_key"}):
  also delete every row up to run_date whose values of those columns a (re)loaded or removed landed file touched;
  the model must then produce all of those rows again (int_customer_daily_orders).
#}
{% macro get_incremental_replace_window_sql(arg_dict) %}
  {%- set target = arg_dict['target_relation'] -%}
  {%- set source = arg_dict['temp_relation'] -%}
  {%- set dest_columns = arg_dict['dest_columns'] -%}
  {%- set column = config.get('window_column') -%}
  {%- if not column -%}
    {{ exceptions.raise_compiler_error(model.name ~ ": incremental_strategy 'replace_window' needs config window_column") }}
  {%- endif -%}
  {%- set cols = get_quoted_csv(dest_columns | map(attribute='name')) -%}
  delete from {{ target }}
  where {{ replace_window_dates(column) }};
  {%- if config.get('replace_reloaded') %}

  {#- a statement of its own: OR-ed with the window, the IN became a mark join over every stored row, each night
      (0.7 s of interactions' 2 s at L after a year); alone it is a semi-join that an empty list ends at once -#}
  delete from {{ target }}
  where {{ replace_reloaded_rows(column) }};
  {%- endif %}

  insert into {{ target }} ({{ cols }})
  select {{ cols }} from {{ source }};
{% endmacro %}


{#- the rows replace_window replaces (shared with the Spark version, macros/strategies/spark.sql) -#}
{% macro replace_window_predicate(column) -%}
  {{ replace_window_dates(column) }}
  {%- if config.get('replace_reloaded') %}
    or {{ replace_reloaded_rows(column) }}
  {%- endif %}
{%- endmacro %}


{#- the window's dates -#}
{% macro replace_window_dates(column) -%}
  ({{ column }} >= {{ lookback_start() }}
  {%- if config.get('window_end', 'run_date') != 'open' %}
    and {{ column }} <= {{ run_date() }}
  {%- endif %})
{%- endmacro %}


{#- every row (up to run_date) of the keys a replaced or deleted landed file touched: the model recomputes them.
    Config replace_reloaded: a list of columns named as in reloaded_transactions(), or {target column: expression
    over its columns} -#}
{% macro replace_reloaded_rows(column) -%}
  {%- set reloaded = config.get('replace_reloaded') -%}
  {%- set targets, exprs = [], [] -%}
  {%- for name in reloaded -%}
    {%- do targets.append(name) -%}
    {%- do exprs.append(reloaded[name] if reloaded is mapping else name) -%}
  {%- endfor -%}
  (({{ targets | join(', ') }}) in (select {{ exprs | join(', ') }} from ({{ reloaded_transactions() }}))
        and {{ column }} <= {{ run_date() }})
{%- endmacro %}
