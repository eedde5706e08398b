{# Small generic tests written here because dbt packages cannot be downloaded on these machines. #}

{% test unique_combination(model, columns) %}
    -- rows whose combination of `columns` is not unique
    select {{ columns | join(', ') }}, count(*) as occurrences
    from {{ model }}
    group by {{ columns | join(', ') }}
    having count(*) > 1
{% endtest %}


{% test expression_is_true(model, expression, where_clause=none) %}
    -- rows for which `expression` is false or null
    select *
    from {{ model }}
    where not coalesce(({{ expression }}), false)
    {% if where_clause %} and ({{ where_clause }}) {% endif %}
{% endtest %}


{% test between(model, column_name, min_value=none, max_value=none) %}
    -- values outside [min_value, max_value] (nulls pass; test not_null separately)
    select {{ column_name }}
    from {{ model }}
    where {{ column_name }} is not null
      and (
        false
        {% if min_value is not none %} or {{ column_name }} < {{ min_value }} {% endif %}
        {% if max_value is not none %} or {{ column_name }} > {{ max_value }} {% endif %}
      )
{% endtest %}


{% test unique_combination_in_window(model, columns, date_column) %}
    -- combinations of `columns` (the first one not null) that occur more than once in the whole table, among those
    -- of the rows the night processes (date_column in test_window_start() .. run_date()). The first column must be
    -- one that every duplicate of a row shares (for one column, the column itself; for a landed row, its file): the
    -- table is narrowed to the night's values of it by a semi-join before the grouping, so a night reads the
    -- history's values of one column and groups only its own rows' duplicates. Earlier rows were checked on their
    -- own nights. A first build or --full-refresh (no window) groups the whole table.
    {%- set start = test_window_start() %}
    select {{ columns | join(', ') }}, count(*) as occurrences
    from {{ model }}
    {%- if start is none %}
    where {{ columns[0] }} is not null
    {%- else %}
    where {{ columns[0] }} in (
        select {{ columns[0] }} from {{ model }}
        where {{ date_column }} between {{ date_literal(start) }} and {{ run_date() }}
    )
    {%- endif %}
    group by {{ columns | join(', ') }}
    having count(*) > 1
{% endtest %}


{% test unique_in_window(model, column_name, date_column) %}
    -- values of `column_name` in the night's rows that occur more than once in the whole table (see above)
    {{ test_unique_combination_in_window(model, [column_name], date_column) }}
{% endtest %}
