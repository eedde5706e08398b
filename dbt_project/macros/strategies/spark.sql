{#
  The project's incremental strategies on Spark SQL (#16, docs/scale.md "Spark SQL").

  Spark's Parquet tables have no DELETE. A strategy's "delete these rows, insert those" becomes one rewrite of the
  partitions it touches (tables that replace by date are partitioned by that date: partition_by, set per model by
  date_partition()), or of the whole table when the model has no date partition (fct_orders, int_order_lines,
  fct_sessions):
    1. the new rows and the kept rows of the touched partitions are written to a staging Parquet table first
       (dbt-spark's new rows are a view that may read the target; Spark cannot overwrite what it reads);
    2. INSERT OVERWRITE (dynamic partition mode: only the partitions in the staged rows) publishes them;
    3. a touched partition left without rows is dropped.
  Each step replaces whole files: a failure before 2 leaves the table as it was.
#}

{% macro date_partition(column) -%}
  {#- config(partition_by=date_partition('known_date')): a date partition on Spark; none on DuckDB (tables there
      are not partitioned, and dbt-duckdb warns about partition_by outside DuckLake) -#}
  {{- return(column if target.type == 'spark' else none) -}}
{%- endmacro %}


{# dbt-spark accepts only its own strategies; the project's are added here, the others stay dbt-spark's #}
{% macro dbt_spark_validate_get_incremental_strategy(raw_strategy, file_format) %}
  {%- if raw_strategy in ('replace_dates', 'replace_window', 'replace_where', 'delete+insert') -%}
    {{- return(raw_strategy) -}}
  {%- endif -%}
  {{- return(dbt_spark.dbt_spark_validate_get_incremental_strategy(raw_strategy, file_format)) -}}
{% endmacro %}


{% macro dbt_spark_get_incremental_sql(strategy, source, target, existing, unique_key, incremental_predicates) %}
  {%- set partition = config.get('partition_by') -%}
  {%- if strategy == 'replace_dates' -%}
    {%- set column = config.get('date_column', 'as_of_date') -%}
    {%- set predicate = column ~ ' in (select distinct ' ~ column ~ ' from ' ~ source ~ ')' -%}
    {%- if config.get('replace_run_date', true) -%}
      {%- set predicate = predicate ~ ' or ' ~ column ~ ' = ' ~ run_date() -%}
    {%- endif -%}
    {{- spark_replace_rows(target, source, predicate) -}}
  {%- elif strategy == 'replace_window' -%}
    {{- spark_replace_rows(target, source, replace_window_predicate(config.get('window_column'))) -}}
  {%- elif strategy == 'replace_where' -%}
    {{- spark_replace_rows(target, source, replace_where_predicate()) -}}
  {%- elif strategy == 'delete+insert' -%}
    {%- set keys = [unique_key] if unique_key is string else unique_key -%}
    {%- set predicate = '(' ~ keys | join(', ') ~ ') in (select ' ~ keys | join(', ') ~ ' from ' ~ source ~ ')' -%}
    {{- spark_replace_rows(target, source, predicate) -}}
  {%- else -%}
    {{- dbt_spark.dbt_spark_get_incremental_sql(strategy, source, target, existing, unique_key, incremental_predicates) -}}
  {%- endif -%}
{% endmacro %}


{% macro delete_rows_where(relation, predicate) -%}
  {#- a pre-hook's "delete from relation where predicate", on either warehouse -#}
  {{- adapter.dispatch('delete_rows_where', 'c360')(relation, predicate) -}}
{%- endmacro %}
{% macro default__delete_rows_where(relation, predicate) -%} delete from {{ relation }} where {{ predicate }} {%- endmacro %}
{% macro spark__delete_rows_where(relation, predicate) -%} {{ spark_replace_rows(relation, none, predicate) }} {%- endmacro %}

{% macro delete_rows_missing_from(relation, key, source, candidates=none) -%}
  {#- a pre-hook's "delete the rows whose key is no longer in source" (an order whose landed file was deleted).
      NOT EXISTS, not NOT IN: Spark plans a NOT IN subquery inside an expression (the rewrite's "keep the rows where
      not deleted") as a null-aware nested-loop join, every row against every row (at M it ran for more than 19 min
      without finishing); an EXISTS becomes a sort-merge semi-join.
      candidates: a query of the only keys that can have gone (those of the lines a replaced or deleted landed file
      took out: reloaded_transactions()). Checked first, so that a night without such files does not match every
      stored key against the whole source (an anti-join that grew with the history: 0.6 s at L after a year). -#}
  {%- set missing = 'not exists (select 1 from ' ~ source ~ ' as kept where kept.' ~ key ~ ' = '
      ~ relation.identifier ~ '.' ~ key ~ ')' -%}
  {%- if candidates is not none -%}
    {%- set missing = 'exists (select 1 from (' ~ candidates ~ ') as gone where gone.' ~ key ~ ' = '
        ~ relation.identifier ~ '.' ~ key ~ ') and ' ~ missing -%}
  {%- endif -%}
  {{- delete_rows_where(relation, missing) -}}
{%- endmacro %}


{#
  Runs steps 1 and 3 (above) itself and returns step 2's statement for the materialization to run last... except that
  step 3 must follow step 2, so everything runs here and the returned statement is a no-op.
  predicate: the rows to delete (null counts as false, as in DELETE); source: the rows to insert, or none.
#}
{% macro spark_replace_rows(target, source, predicate) %}
  {%- set partition = config.get('partition_by') -%}
  {%- set partition = partition[0] if partition is not string and partition is not none else partition -%}
  {%- set names = [] -%}
  {%- for col in adapter.get_columns_in_relation(target) -%}{%- do names.append(adapter.quote(col.name)) -%}{%- endfor -%}
  {%- set cols = names | join(', ') -%}
  {%- set stage = target.incorporate(path={'identifier': target.identifier ~ '__c360_stage'}) -%}
  {%- set deleted = 'coalesce((' ~ predicate ~ '), false)' -%}
  {%- do run_query('drop table if exists ' ~ stage) -%}
  {%- if partition -%}
    {#- the touched partitions, as literals: two queries, not a UNION in a subquery (Spark 4.3's local executor
        fails to deserialise one: "cannot assign ... to field UnionExec.children") -#}
    {%- set touched_values = [] -%}
    {%- set queries = ['select distinct ' ~ partition ~ ' from ' ~ target ~ ' where ' ~ deleted] -%}
    {%- if source -%}{%- do queries.append('select distinct ' ~ partition ~ ' from ' ~ source) -%}{%- endif -%}
    {%- for query in queries -%}
      {%- for value in run_query(query).columns[0].values() -%}
        {%- if value is not none and value | string not in touched_values -%}{%- do touched_values.append(value | string) -%}{%- endif -%}
      {%- endfor -%}
    {%- endfor -%}
    {%- if not touched_values -%}
      {{- return('select 1') -}}
    {%- endif -%}
    {%- set stage_sql -%}
      select {{ cols }} from {{ target }}
      where {{ partition }} in ('{{ touched_values | join("', '") }}') and not {{ deleted }}
      {%- if source %} union all select {{ cols }} from {{ source }} {%- endif %}
    {%- endset -%}
    {%- do run_query('create table ' ~ stage ~ ' using parquet as ' ~ stage_sql) -%}
    {%- do run_query('insert overwrite table ' ~ target ~ ' partition (' ~ partition ~ ') select ' ~ cols ~ ' from ' ~ stage) -%}
    {%- set kept = [] -%}
    {%- for value in run_query('select distinct ' ~ partition ~ ' from ' ~ stage).columns[0].values() -%}
      {%- do kept.append(value | string) -%}
    {%- endfor -%}
    {%- for value in touched_values if value not in kept -%}
      {%- do run_query('alter table ' ~ target ~ ' drop if exists partition (' ~ partition ~ " = '" ~ value ~ "')") -%}
    {%- endfor -%}
  {%- else -%}
    {%- set stage_sql -%}
      select {{ cols }} from {{ target }} where not {{ deleted }}
      {%- if source %} union all select {{ cols }} from {{ source }} {%- endif %}
    {%- endset -%}
    {%- do run_query('create table ' ~ stage ~ ' using parquet as ' ~ stage_sql) -%}
    {%- do run_query('insert overwrite table ' ~ target ~ ' select ' ~ cols ~ ' from ' ~ stage) -%}
  {%- endif -%}
  {%- do run_query('drop table if exists ' ~ stage) -%}
  {{- return('select 1') -}}
{% endmacro %}


{% macro reader_view() -%}
  {#- config(materialized=reader_view()): a view on DuckDB; a table on Spark, whose readers (DuckDB over the
      tables' Parquet files: c360.pipeline.spark_warehouse.reader) see files, not Spark's view definitions -#}
  {{- return('table' if target.type == 'spark' else 'view') -}}
{%- endmacro %}
