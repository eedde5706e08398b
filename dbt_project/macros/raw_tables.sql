{#
  on-run-start: make sure the raw tables dbt reads exist, so a warehouse that has only transactions
  (or nothing yet, or no scores yet) still builds. The ingestion normally creates them; this only creates missing
  ones, empty, with the columns of c360/ingest/contract.py (tests/test_dbt_project.py checks the two agree).
  The score tables are not tables: publish_score_views (macros/score_views.sql) puts views over the scoring job's
  Parquet in their place.
#}
{% macro raw_table_columns() %}
  {%- set metadata = [('_source_file', 'VARCHAR'), ('_source_line', 'BIGINT'), ('_dt', 'DATE'),
                      ('_run_date', 'DATE'), ('_loaded_at', 'TIMESTAMPTZ'), ('_row_hash', 'UHUGEINT')] -%}
  {%- set tables = {
    'transactions': [('order_id', 'VARCHAR'), ('customer_id', 'VARCHAR'), ('ordered_at', 'TIMESTAMPTZ'),
                     ('amount', 'DECIMAL(18,4)'), ('quantity', 'INTEGER'), ('unit_price', 'DECIMAL(18,4)'),
                     ('line_id', 'INTEGER'), ('product_id', 'VARCHAR'), ('discount', 'DECIMAL(18,4)'),
                     ('currency', 'VARCHAR'), ('line_type', 'VARCHAR'), ('returned_at', 'TIMESTAMPTZ'),
                     ('status', 'VARCHAR'), ('channel', 'VARCHAR'), ('is_test', 'BOOLEAN'), ('updated_at', 'TIMESTAMPTZ')],
    'customers': [('customer_id', 'VARCHAR'), ('email', 'VARCHAR'), ('first_name', 'VARCHAR'), ('last_name', 'VARCHAR'),
                  ('signup_at', 'TIMESTAMPTZ'), ('country', 'VARCHAR'), ('acquisition_channel', 'VARCHAR'),
                  ('marketing_consent', 'BOOLEAN'), ('consent_updated_at', 'TIMESTAMPTZ'), ('updated_at', 'TIMESTAMPTZ')],
    'products': [('product_id', 'VARCHAR'), ('name', 'VARCHAR'), ('category', 'VARCHAR'), ('subcategory', 'VARCHAR'),
                 ('brand', 'VARCHAR'), ('price', 'DECIMAL(18,4)'), ('currency', 'VARCHAR'), ('updated_at', 'TIMESTAMPTZ')],
    'tracking_events': [('event_id', 'VARCHAR'), ('event_type', 'VARCHAR'), ('occurred_at', 'TIMESTAMPTZ'),
                        ('anonymous_id', 'VARCHAR'), ('customer_id', 'VARCHAR'), ('page_url', 'VARCHAR'),
                        ('product_id', 'VARCHAR'), ('search_query', 'VARCHAR'), ('order_id', 'VARCHAR'),
                        ('quantity', 'INTEGER'), ('device_type', 'VARCHAR'), ('os', 'VARCHAR'), ('browser', 'VARCHAR'),
                        ('referrer', 'VARCHAR'), ('utm_source', 'VARCHAR'), ('utm_medium', 'VARCHAR'),
                        ('utm_campaign', 'VARCHAR'), ('vendor', 'VARCHAR'), ('vendor_event_name', 'VARCHAR'),
                        ('vendor_extra', 'VARCHAR')],
  } -%}
  {%- set out = {} -%}
  {%- for name, cols in tables.items() -%}
    {%- do out.update({name: cols + metadata}) -%}
  {%- endfor -%}
  {{- return(out) -}}
{% endmacro %}


{% macro create_raw_tables_if_missing() %}
  {{- return(adapter.dispatch('create_raw_tables_if_missing', 'c360')()) -}}
{% endmacro %}


{% macro default__create_raw_tables_if_missing() %}
  {%- if execute -%}
    {%- set statements = ["create schema if not exists raw"] -%}
    {%- set tables = raw_table_columns() -%}
    {%- for name, cols in tables.items() -%}
      {%- set col_sql = [] -%}
      {%- for col, typ in cols -%}{%- do col_sql.append('"' ~ col ~ '" ' ~ typ) -%}{%- endfor -%}
      {%- do statements.append("create table if not exists raw." ~ name ~ " (" ~ col_sql | join(', ') ~ ")") -%}
    {%- endfor -%}
    {#- the lines a replaced or deleted landed file removed (c360/ingest/load.py REMOVED_TRANSACTIONS_DDL) -#}
    {%- do statements.append("create table if not exists raw.transactions_removed (order_id VARCHAR, line_id INTEGER, "
        ~ "line_type VARCHAR, customer_id VARCHAR, ordered_at TIMESTAMPTZ, returned_at TIMESTAMPTZ, "
        ~ "_source_file VARCHAR, _source_line BIGINT, _dt DATE, _run_date DATE, _removed_at TIMESTAMPTZ)") -%}
    {{- return(statements | join(';\n') ~ ';') -}}
  {%- endif -%}
{% endmacro %}


{#
  Spark SQL: the raw tables are Parquet, partitioned by the landing date _dt (the ingestion replaces a landed
  file's rows by rewriting the partitions it touched), with the contract's types in Spark's names.
#}
{% macro spark__create_raw_tables_if_missing() %}
  {%- if execute -%}
    {%- set tables = raw_table_columns() -%}
    {%- do tables.update({'transactions_removed': [
        ('order_id', 'VARCHAR'), ('line_id', 'INTEGER'), ('line_type', 'VARCHAR'), ('customer_id', 'VARCHAR'),
        ('ordered_at', 'TIMESTAMPTZ'), ('returned_at', 'TIMESTAMPTZ'), ('_source_file', 'VARCHAR'),
        ('_source_line', 'BIGINT'), ('_dt', 'DATE'), ('_run_date', 'DATE'), ('_removed_at', 'TIMESTAMPTZ')]}) -%}
    {%- set statements = ["create schema if not exists raw"] -%}
    {%- for name, cols in tables.items() -%}
      {%- set col_sql = [] -%}
      {%- for col, typ in cols if col != '_dt' -%}{%- do col_sql.append('`' ~ col ~ '` ' ~ spark_type(typ)) -%}{%- endfor -%}
      {%- do col_sql.append('`_dt` date') -%}
      {%- do statements.append("create table if not exists raw." ~ name ~ " (" ~ col_sql | join(', ')
                               ~ ") using parquet partitioned by (`_dt`)") -%}
    {%- endfor -%}
    {#- Spark runs one statement per call -#}
    {%- for statement in statements -%}{%- do run_query(statement) -%}{%- endfor -%}
  {%- endif -%}
  {{- return('select 1') -}}
{% endmacro %}


{% macro spark_type(duckdb_type) %}
  {#- a contract type (DuckDB's name) in Spark SQL; the 128-bit row hash has no Spark integer, it is kept as text -#}
  {%- set t = duckdb_type | upper -%}
  {%- set names = {'VARCHAR': 'string', 'TIMESTAMPTZ': 'timestamp', 'INTEGER': 'int', 'BIGINT': 'bigint',
                   'UHUGEINT': 'string', 'DOUBLE': 'double', 'BOOLEAN': 'boolean', 'DATE': 'date'} -%}
  {{- return(names.get(t, t | lower)) -}}
{% endmacro %}
