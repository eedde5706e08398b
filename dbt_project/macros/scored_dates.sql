{#
  The dates an incremental score mart (customer_scores, customer_recommendations) rebuilds: the run date, and
  every date of raw.<table> loaded since the mart last saw it (not built yet, or a different latest load time:
  a backfill scored later, a date re-scored). Returned as date literals, resolved before the model's query runs,
  so the filter `as_of_date in (...)` reaches the raw scan through the staging view's per-date dedup window
  (a semi-join does not: it sorted every row of every scored date, 30 nights x 1M recommendations at M took 16 s).
#}
{% macro scored_dates_to_build(table) -%}
  {%- set raw = source('scores', table) -%}
  {%- if not execute -%}
    {{- return('cast(null as date)') -}}
  {%- endif -%}
  {%- set query -%}
    with loaded as (
        select as_of_date, max(_loaded_at) as loaded_at from {{ raw }} group by as_of_date
    ),
    built as (
        select as_of_date, max(loaded_at) as loaded_at from {{ this }} group by as_of_date
    )
    select loaded.as_of_date
    from loaded
    left join built on built.as_of_date = loaded.as_of_date
    where loaded.as_of_date = {{ run_date() }}
       or built.as_of_date is null
       or loaded.loaded_at is distinct from built.loaded_at
    order by 1
  {%- endset -%}
  {%- set literals = [] -%}
  {%- for d in run_query(query).columns[0].values() if d is not none -%}
    {%- do literals.append(date_literal(d)) -%}
  {%- endfor -%}
  {{- return(literals | join(', ') if literals else 'cast(null as date)') -}}
{%- endmacro %}
