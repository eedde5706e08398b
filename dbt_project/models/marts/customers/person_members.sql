-- One row per customer id with its person: when the customer id was first seen, and when it joined its person
-- (the first day the links known by then connected it to the anchor: over all paths, the earliest day on which
-- every link of the path was known). The anchor joins on its own first day.

with components as (

    select * from {{ ref('int_identity_components') }}

),

edges as (

    select left_customer_id as from_id, right_customer_id as to_id, linked_date from {{ ref('int_identity_customer_pairs') }}
    union all
    select right_customer_id, left_customer_id, linked_date from {{ ref('int_identity_customer_pairs') }}

),

paths as (

    {{ person_join_dates('components', 'edges') }}

),

direct_links as (

    -- the kinds of evidence tying each member to another member of the same person
    select edges.from_id as customer_id, {{ distinct_sorted_list('t') }} as linked_by
    from (
        select left_customer_id as from_id, right_customer_id as to_id, {{ unnest_list('identifier_types') }} as t
        from {{ ref('int_identity_customer_pairs') }}
        union all
        select right_customer_id, left_customer_id, {{ unnest_list('identifier_types') }}
        from {{ ref('int_identity_customer_pairs') }}
    ) as edges
    group by edges.from_id

)

select
    components.person_id,
    components.customer_id,
    components.is_anchor,
    components.first_seen_date,
    greatest(coalesce(paths.joined_date, components.first_seen_date), components.first_seen_date) as joined_date,
    direct_links.linked_by
from components
left join paths on paths.customer_id = components.customer_id
left join direct_links on direct_links.customer_id = components.customer_id
