{#
  dbt's `where` config of data tests, plus one placeholder: __run_date__ becomes the run's date literal
  (run_date()). Tests of tables that grow by a date partition every night use it to check only that night's
  partition (dbt_project.yml, data_tests), which a rerun of the date replaces wholesale: their cost stays flat
  as the history grows. The pattern (overriding get_where_subquery) is the one dbt documents for custom `where` logic.
#}
{% macro get_where_subquery(relation) -%}
    {%- set where = config.get('where', '') -%}
    {%- if where -%}
        {%- if '__run_date__' in where -%}
            {%- set where = where | replace('__run_date__', run_date()) -%}
        {%- endif -%}
        {%- set filtered -%}
            (select * from {{ relation }} where {{ where }}) dbt_subquery
        {%- endset -%}
        {%- do return(filtered) -%}
    {%- else -%}
        {%- do return(relation) -%}
    {%- endif -%}
{%- endmacro %}
