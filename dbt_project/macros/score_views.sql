{#
  The scoring job's output as dbt sources, with no copy in between: raw.scores and raw.recommendations are views over
  the Parquet partitions spark_jobs/score.py publishes under C360_SCORES_DIR/<table>/dt=D/ (an atomic swap of the
  whole date). on-run-start (re)creates them for every dbt invocation, so they always show exactly the partitions
  on disk: a date scored again, scored later (a backfill) or withdrawn is what the next build sees.

  score_table_columns() is the one scores contract on the warehouse side: the typed columns dbt reads. The writer's
  column lists are spark_jobs/score.py's SCORES_COLUMNS / RECOMMENDATION_COLUMNS; tests/test_scores_source.py
  checks the two agree. A column missing from older partitions reads as null (union_by_name), so partitions
  written before a column existed still load.

  _loaded_at is the Parquet file's modification time: when the scoring job published that date. The incremental
  score marts compare it with what they last saw (scored_dates_to_build) to rebuild re-scored, late or erased dates.
  Hidden folders (the writer's `.dt=D.tmp-*` of a run in progress or killed) never match the `dt=*` glob.
#}
{% macro score_table_columns() %}
  {{- return({
    'scores': [('customer_id', 'VARCHAR'), ('as_of_date', 'DATE'), ('run_id', 'VARCHAR'),
               ('churn_probability', 'DOUBLE'), ('churn_decile', 'INTEGER'), ('p_alive', 'DOUBLE'),
               ('expected_purchases', 'DOUBLE'), ('predicted_value_eur', 'DOUBLE'), ('value_decile', 'INTEGER'),
               ('churn_model_version', 'VARCHAR'), ('clv_model_version', 'VARCHAR'),
               ('recommender_model_version', 'VARCHAR'), ('feature_snapshot_date', 'DATE'),
               ('scored_at', 'TIMESTAMPTZ'), ('churn_horizon_days', 'INTEGER'), ('value_horizon_days', 'INTEGER'),
               ('churn_reason_1', 'VARCHAR'), ('churn_reason_2', 'VARCHAR'), ('churn_reason_3', 'VARCHAR')],
    'recommendations': [('customer_id', 'VARCHAR'), ('as_of_date', 'DATE'), ('rank', 'INTEGER'),
                        ('product_id', 'VARCHAR'), ('score', 'DOUBLE'), ('source', 'VARCHAR'), ('run_id', 'VARCHAR'),
                        ('recommender_model_version', 'VARCHAR')],
  }) -}}
{% endmacro %}


{% macro scores_dir() %}
  {{- return(env_var('C360_SCORES_DIR', '../data/scores').rstrip('/')) -}}
{% endmacro %}


{% macro score_view_sql(table, columns) %}
  {#- the path comes from the environment: quoted as a SQL string literal, never spliced in raw -#}
  {%- set files = (scores_dir() ~ '/' ~ table ~ '/dt=*/*.parquet') | replace("'", "''") -%}
  {%- set found = run_query("select count(*) from glob('" ~ files ~ "')").columns[0].values()[0] -%}
  {%- if found == 0 -%}
    {#- nothing scored yet: an empty view with the contract's columns -#}
    {%- set cols = [] -%}
    {%- for name, type in columns -%}{%- do cols.append('cast(null as ' ~ type ~ ') as "' ~ name ~ '"') -%}{%- endfor -%}
    {{- return('select ' ~ cols | join(', ') ~ ", cast(null as timestamptz) as _loaded_at where false") -}}
  {%- endif -%}
  {%- set source = "read_parquet('" ~ files ~ "', union_by_name = true, filename = true, hive_partitioning = false)" -%}
  {%- set present = run_query("select column_name from (describe select * from " ~ source ~ ")").columns[0].values() -%}
  {%- set cols = [] -%}
  {%- for name, type in columns -%}
    {%- if name in present -%}
      {%- do cols.append('cast(p."' ~ name ~ '" as ' ~ type ~ ') as "' ~ name ~ '"') -%}
    {%- else -%}
      {%- do cols.append('cast(null as ' ~ type ~ ') as "' ~ name ~ '"') -%}
    {%- endif -%}
  {%- endfor -%}
  {{- return('select ' ~ cols | join(', ') ~ ', f.last_modified as _loaded_at from ' ~ source ~ ' as p '
             ~ "join read_blob('" ~ files ~ "') as f on f.filename = p.filename") -}}
{% endmacro %}


{% macro publish_score_views() %}
  {{- return(adapter.dispatch('publish_score_views', 'c360')()) -}}
{% endmacro %}


{% macro default__publish_score_views() %}
  {%- if execute -%}
    {%- set statements = ["create schema if not exists raw"] -%}
    {%- for table, columns in score_table_columns().items() -%}
      {#- a warehouse from before the views held copies in tables of the same name: the Parquet is the truth -#}
      {%- set kind = run_query("select table_type from information_schema.tables where table_schema = 'raw' "
                               ~ "and table_name = '" ~ table ~ "'").columns[0].values() -%}
      {%- if kind and kind[0] == 'BASE TABLE' -%}
        {%- do statements.append("drop table raw." ~ table) -%}
      {%- endif -%}
      {%- do statements.append("create or replace view raw." ~ table ~ " as " ~ score_view_sql(table, columns)) -%}
    {%- endfor -%}
    {{- return(statements | join(';\n') ~ ';') -}}
  {%- endif -%}
{% endmacro %}


{#
  Spark SQL: an external Parquet table over each score folder (raw.<table>_files, partitioned by the writer's dt=D
  folders, re-listed for every invocation; Spark skips the writer's hidden .dt=D.tmp-* folders), and raw.<table>
  as a view over it with the contract's types. A table over the folder, not a read of its files, because the
  folder may hold nothing yet: the declared columns then give an empty view. A column missing from older partitions reads as null; _loaded_at is
  the Parquet file's modification time, as on DuckDB.
#}
{% macro spark__publish_score_views() %}
  {%- if execute -%}
    {%- do run_query("create schema if not exists raw") -%}
    {%- for table, columns in score_table_columns().items() -%}
      {%- set files = (scores_dir() ~ '/' ~ table) | replace("'", "\\'") -%}
      {%- set col_sql, casts = [], [] -%}
      {%- for name, type in columns if name != 'dt' -%}
        {#- whole numbers read as bigint, which also takes a writer's int32 (Spark widens, never narrows) -#}
        {%- set stored = 'bigint' if type == 'INTEGER' else spark_type(type) -%}
        {%- do col_sql.append('`' ~ name ~ '` ' ~ stored) -%}
        {%- do casts.append('cast(`' ~ name ~ '` as ' ~ spark_type(type) ~ ') as `' ~ name ~ '`') -%}
      {%- endfor -%}
      {%- do run_query("create table if not exists raw." ~ table ~ "_files (" ~ col_sql | join(', ')
                       ~ ", dt string) using parquet partitioned by (dt) location '" ~ files ~ "'") -%}
      {%- do run_query("alter table raw." ~ table ~ "_files recover partitions") -%}
      {%- do run_query("create or replace view raw." ~ table ~ " as select " ~ casts | join(', ')
                       ~ ", date_trunc('SECOND', _metadata.file_modification_time) as _loaded_at from raw." ~ table ~ "_files") -%}
    {%- endfor -%}
  {%- endif -%}
  {{- return('select 1') -}}
{% endmacro %}
