{#
  The one rule for versioned source rows (re-sent transaction lines, customer and product changes):
  the latest version wins (updated_at, then landing date, load time, file and line), and each version stays
  valid until the first day a higher-ranked version is known. Adds version_rank (1 = current) and valid_to_date.
#}
{% macro rank_versions(relation, partition_by) %}
  {{- return(adapter.dispatch('rank_versions', 'c360')(relation, partition_by)) -}}
{% endmacro %}


{% macro default__rank_versions(relation, partition_by) %}
    select
        *,
        row_number() over latest_first                                 as version_rank,
        min(known_date) over (latest_first rows between unbounded preceding and 1 preceding) as valid_to_date
    from {{ relation }}
    window latest_first as (
        partition by {{ partition_by }}
        order by updated_at desc nulls last, landed_date desc, loaded_at desc, source_file desc, source_line desc
    )
{% endmacro %}


{#- Spark SQL takes no frame on a reference to a named window: the same ranking with the window spelled out. -#}
{% macro spark__rank_versions(relation, partition_by) %}
  {%- set latest_first -%}
        partition by {{ partition_by }}
        order by updated_at desc nulls last, landed_date desc, loaded_at desc, source_file desc, source_line desc
  {%- endset %}
    select
        *,
        row_number() over ({{ latest_first }})                           as version_rank,
        min(known_date) over ({{ latest_first }}
            rows between unbounded preceding and 1 preceding)            as valid_to_date
    from {{ relation }}
{% endmacro %}
