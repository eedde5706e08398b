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
