{#- A relation with a customer_id column, re-keyed to persons: customer_id becomes the person's primary member
    (int_person_keys.person_customer_id), so aggregating by customer_id aggregates over every customer id of the
    person. An id the graph does not know keeps its own (a person of one). Other columns are unchanged; the member's
    own id stays available as member_customer_id. docs/identity.md. -#}
{% macro by_person(relation) -%}
(
    select
        _member.* except (customer_id),
        _member.customer_id                                                     as member_customer_id,
        coalesce(_keys.person_customer_id, _member.customer_id)                 as customer_id
    from {{ relation }} as _member
    left join {{ ref('int_person_keys') }} as _keys on _keys.customer_id = _member.customer_id
)
{%- endmacro %}
