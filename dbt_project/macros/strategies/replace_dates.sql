{#
  Incremental strategy `replace_dates`, for tables partitioned by a date column (config `date_column`,
  default as_of_date): delete every date the model produced rows for, and the run date itself, then insert.

  The run date is replaced even when the model produced nothing for it (a rerun after the date's scores were
  withdrawn, a segment that lost every member): a rerun gives exactly what the model computes now, never a
  leftover. Config `replace_run_date: false` turns that off (segment_members does when it was given no
  segment definitions: then it must not touch the date at all). Other dates are only replaced when produced.
#}
{% macro get_incremental_replace_dates_sql(arg_dict) %}
  {%- set target = arg_dict['target_relation'] -%}
  {%- set source = arg_dict['temp_relation'] -%}
  {%- set dest_columns = arg_dict['dest_columns'] -%}
  {%- set column = config.get('date_column', 'as_of_date') -%}
  {%- set cols = get_quoted_csv(dest_columns | map(attribute='name')) -%}
  delete from {{ target }}
  where {{ column }} in (select distinct {{ column }} from {{ source }})
  {%- if config.get('replace_run_date', true) %}
     or {{ column }} = {{ run_date() }}
  {%- endif %};

  insert into {{ target }} ({{ cols }})
  select {{ cols }} from {{ source }};
{% endmacro %}
