-- The latest feature snapshot's order counts equal the customer-day states known at its date: a check that
-- customer_features reads exactly the states an end-of-day view allows. The snapshot is per person (customer_id =
-- the person's primary member, docs/identity.md), so the states are summed over every customer id of the person.
-- Returns the persons that disagree.

with snapshot as (

    select customer_id, as_of_date, orders_count
    from {{ ref('customer_features') }}
    where as_of_date = (select max(as_of_date) from {{ ref('customer_features') }})

),

states as (

    select daily.customer_id, daily.orders_count
    from {{ by_person(ref('int_customer_daily_orders')) }} as daily
    where daily.known_date <= (select max(as_of_date) from snapshot)
    qualify row_number() over (partition by daily.member_customer_id, daily.activity_date order by daily.known_date desc) = 1

),

expected as (

    select customer_id, sum(orders_count) as orders_count
    from states
    group by customer_id

)

select snapshot.customer_id, snapshot.orders_count, expected.orders_count as expected_orders_count
from snapshot
left join expected on expected.customer_id = snapshot.customer_id
where snapshot.orders_count <> coalesce(expected.orders_count, 0)
