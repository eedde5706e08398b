-- Connected components of the identity graph: one row per customer id known by run_date with its person.
-- Nodes are every customer id of customers, transactions (guest orders too) and identity links; edges are
-- int_identity_customer_pairs. The walk is a recursive CTE with UNION (set semantics), so it stops once no new
-- (start, reached) pair appears: at most the sum of squared component sizes, small because the guard keeps
-- shared devices and test accounts out.
-- The person's anchor is its earliest-known customer id (ties: the smallest id), and person_id is a hash of the
-- anchor: an unrelated link never changes it, and a new account joining an existing person keeps its id.

with nodes_raw as (

    select customer_id, known_date from {{ ref('stg_shop__customers') }} where known_date <= {{ run_date() }}
    union all
    select customer_id, known_date from {{ ref('stg_shop__transactions') }} where known_date <= {{ run_date() }}
    union all
    select customer_id, first_seen_date from {{ ref('int_identity_identifiers') }}

),

nodes as (

    select customer_id, min(known_date) as first_seen_date
    from nodes_raw
    where customer_id is not null
    group by customer_id

),

edges as (

    select left_customer_id as from_id, right_customer_id as to_id from {{ ref('int_identity_customer_pairs') }}
    union all
    select right_customer_id, left_customer_id from {{ ref('int_identity_customer_pairs') }}

),

anchors as (

    {{ identity_anchors('nodes', 'edges') }}

)

select
    'p_' || substr({{ sha256_hex('anchors.anchor_customer_id') }}, 1, 24)                   as person_id,
    anchors.customer_id,
    anchors.anchor_customer_id,
    anchors.customer_id = anchors.anchor_customer_id                            as is_anchor,
    nodes.first_seen_date,
    anchors.component_size
from anchors
inner join nodes on nodes.customer_id = anchors.customer_id
