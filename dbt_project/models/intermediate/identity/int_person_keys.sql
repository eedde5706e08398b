-- The key the customer-level models are re-keyed by: one row per customer id of the identity graph with its person
-- and the person's CRM key, person_customer_id (its primary member). Feature snapshots, labels and customer_360 sum a
-- person's members under that key (macro by_person), so a merged guest order counts in the person's history.
-- The primary member is the person's account, if it has one (a customers row with signup_at known by run_date:
-- the CRM's record, not a guest checkout), else its earliest-known id with a profile or an order (a customer of
-- dim_customers; an id seen only in tracking, e.g. a vendor user id, is never the key), else its anchor; ties:
-- earliest-known, then the smallest id. On a shop without duplicates every person has one member, its own primary: nothing changes.
--
-- Built with the night's graph, and the feature-store backfill (c360.pipeline.transform.backfill_snapshots) reads it
-- without rebuilding it: past snapshots rebuilt today are keyed by today's graph (retroactive), while their events
-- stay those known by their date. docs/identity.md, "Person-level customer_360 and feature store".

with accounts as (

    select distinct customer_id
    from {{ ref('stg_shop__customers') }}
    where known_date <= {{ run_date() }} and signup_date is not null

),

customers as (

    select customer_id from {{ ref('stg_shop__customers') }} where known_date <= {{ run_date() }}
    union
    select customer_id from {{ ref('stg_shop__transactions') }} where known_date <= {{ run_date() }}

),

ranked as (

    select
        components.customer_id,
        components.person_id,
        first_value(components.customer_id) over (
            partition by components.person_id
            order by accounts.customer_id is null, customers.customer_id is null, components.first_seen_date,
                components.customer_id
            rows between unbounded preceding and unbounded following
        )                                                                       as person_customer_id,
        count(*) over (partition by components.person_id)                       as person_customer_count
    from {{ ref('int_identity_components') }} as components
    left join accounts on accounts.customer_id = components.customer_id
    left join customers on customers.customer_id = components.customer_id

)

select customer_id, person_id, person_customer_id, person_customer_count::integer as person_customer_count
from ranked
