{#
  dbt's `where` config of data tests, plus two ways to keep a night's tests about the night's rows:

  - the placeholder __run_date__ becomes the run's date literal (run_date()). Tests of tables that grow by a date
    partition every night use it to check only that night's partition (dbt_project.yml, data_tests), which a rerun of
    the date replaces wholesale.
  - the tested model's (or source's) meta `test_window: <date column>`: its row-level tests (not_null,
    accepted_values, relationships, between, expression_is_true, ...) check only the rows whose <date column> is in
    the night's test window (test_window_start() .. run_date()), on top of the test's own `where`. For tables whose
    older rows never change once landed or built (raw, the staging views over it, incremental models that rewrite
    only their window): those rows were checked on the night they arrived. Tests that compare a row with other rows
    (unique; unique_combination unless the date column is one of its columns, so that a duplicate can only be
    within one date; unique_in_window and unique_combination_in_window scope themselves) and singular tests always
    read the whole table.
    A first build, --full-refresh or C360_TEST_WINDOW_START=all checks every row.

  The pattern (overriding get_where_subquery) is the one dbt documents for custom `where` logic. The tests' cost then
  stays flat as the history grows (#16).
#}
{% macro get_where_subquery(relation) -%}
    {%- set conditions = [] -%}
    {%- set where = config.get('where', '') -%}
    {%- if where -%}
        {%- do conditions.append(where | replace('__run_date__', run_date())) -%}
    {%- endif -%}
    {%- set window_column = test_window_column() -%}
    {%- if window_column -%}
        {%- set start = test_window_start() -%}
        {%- if start is not none -%}
            {%- do conditions.append(window_column ~ ' between ' ~ date_literal(start) ~ ' and ' ~ run_date()) -%}
        {%- endif -%}
    {%- endif -%}
    {%- if conditions -%}
        {%- set filtered -%}
            (select * from {{ relation }} where {{ conditions | join(' and ') }}) dbt_subquery
        {%- endset -%}
        {%- do return(filtered) -%}
    {%- else -%}
        {%- do return(relation) -%}
    {%- endif -%}
{%- endmacro %}


{% macro test_window_column() -%}
    {#- The date column a generic test of the current node is scoped by (meta test_window of the tested model or
        source), or none: singular tests, tests comparing rows with each other, nodes without the meta. -#}
    {%- if not execute or model is not mapping or model.get('resource_type') != 'test' -%}
        {{- return(none) -}}
    {%- endif -%}
    {%- set test_metadata = model.get('test_metadata') or {} -%}
    {%- set test_name = test_metadata.get('name') -%}
    {%- if test_name is none or test_name in ('unique', 'unique_in_window', 'unique_combination_in_window') -%}
        {{- return(none) -}}
    {%- endif -%}
    {%- set tested = model.get('attached_node') or ((model.get('depends_on') or {}).get('nodes') or [none])[0] -%}
    {%- set node = graph.nodes.get(tested) or graph.sources.get(tested) if tested else none -%}
    {%- if node is none -%}
        {{- return(none) -}}
    {%- endif -%}
    {%- set column = (node.get('config', {}).get('meta') or {}).get('test_window') or (node.get('meta') or {}).get('test_window') -%}
    {%- if test_name == 'unique_combination' and column not in ((test_metadata.get('kwargs') or {}).get('columns') or []) -%}
        {#- a duplicate can pair a row of the window with an older one, unless the window column is part of the key -#}
        {{- return(none) -}}
    {%- endif -%}
    {{- return(column) -}}
{%- endmacro %}


{% macro test_window_start() -%}
    {#-
      First date of the rows a night's scoped tests check (a Python date), or none for every row.
      var test_window_start [C360_TEST_WINDOW_START]: empty = lookback_start(catch_up=false), the window the
      incremental models rebuild; a YYYY-MM-DD date (c360.pipeline.transform sets it to the day after the last built
      night when nights were missed, so a catch-up checks every day it brings in); `all` = every row (set for a first
      build). --full-refresh checks every row too.
    -#}
    {%- set raw = var('test_window_start', '') | string | trim -%}
    {%- if flags.FULL_REFRESH or raw in ('all', 'ALL') -%}
        {{- return(none) -}}
    {%- endif -%}
    {%- set d = run_date_value() -%}
    {%- if d is none -%}
        {{- return(none) -}}
    {%- endif -%}
    {%- set start = d - modules.datetime.timedelta(days=int_var('lookback_days')) -%}
    {%- if raw not in ('', 'None', 'none', 'null') -%}
        {%- if not modules.re.fullmatch('[0-9]{4}-[0-9]{2}-[0-9]{2}', raw) -%}
            {{ exceptions.raise_compiler_error("dbt var 'test_window_start' (C360_TEST_WINDOW_START) must be empty, 'all' or a YYYY-MM-DD date, got '" ~ raw ~ "'") }}
        {%- endif -%}
        {%- set given = modules.datetime.datetime.strptime(raw, '%Y-%m-%d').date() -%}
        {%- set start = [start, given] | min -%}
    {%- endif -%}
    {{- return(start) -}}
{%- endmacro %}
