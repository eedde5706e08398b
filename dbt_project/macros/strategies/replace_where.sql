{#
  Incremental strategy `replace_where`: delete the stored rows a predicate names, then insert the model's rows, in
  one statement batch (one transaction on DuckDB; one rewrite on Spark SQL, macros/strategies/spark.sql).
  Config `replace_where`: the name of a project macro returning the predicate (a SQL condition on the target's rows,
  which may refer to them by the table's name), looked up and called when the model runs, not when dbt parses it
  (a config value is rendered at parse time, before run_date and the window are known). For a model whose rebuilt
  rows are not a key or a date range of the new ones: fct_sessions rebuilds cookie-days, and a day left without
  sessions must lose its rows.
#}
{% macro replace_where_predicate() -%}
  {%- set name = config.get('replace_where') -%}
  {%- if not name or context.get(name) is none -%}
    {{ exceptions.raise_compiler_error("incremental_strategy 'replace_where' needs config replace_where: the name of a predicate macro, got '" ~ name ~ "'") }}
  {%- endif -%}
  {{- return(context[name]()) -}}
{%- endmacro %}


{% macro get_incremental_replace_where_sql(arg_dict) %}
  {%- set target = arg_dict['target_relation'] -%}
  {%- set source = arg_dict['temp_relation'] -%}
  {%- set cols = get_quoted_csv(arg_dict['dest_columns'] | map(attribute='name')) -%}
  delete from {{ target }} where {{ replace_where_predicate() }};

  insert into {{ target }} ({{ cols }})
  select {{ cols }} from {{ source }};
{% endmacro %}
