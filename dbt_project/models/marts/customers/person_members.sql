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

    -- (anchor, reached, day the path was complete); UNION stops when no new triple appears
    with recursive walk(anchor_id, reached_id, path_date) as (
        select customer_id, customer_id, first_seen_date from components where is_anchor and component_size > 1
        union
        select walk.anchor_id, edges.to_id, greatest(walk.path_date, edges.linked_date)
        from walk
        inner join edges on edges.from_id = walk.reached_id
    )
    select reached_id as customer_id, min(path_date) as joined_date from walk group by reached_id

),

direct_links as (

    -- the kinds of evidence tying each member to another member of the same person
    select edges.from_id as customer_id, list(distinct t order by t) as linked_by
    from (
        select left_customer_id as from_id, right_customer_id as to_id, unnest(identifier_types) as t
        from {{ ref('int_identity_customer_pairs') }}
        union all
        select right_customer_id, left_customer_id, unnest(identifier_types)
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
