-- One row per person: a set of customer ids the identity graph says are one human (accounts, guest checkouts,
-- duplicate accounts), keyed by the stable person_id. Most persons have exactly one customer id.
-- No list of the members here: customer ids live only in columns named *customer_id, which erasure
-- (c360 erase-customer) sweeps; person_members lists them.

select
    person_id,
    max_by(customer_id, is_anchor)                                             as anchor_customer_id,
    count(*)                                                                    as customer_id_count,
    min(first_seen_date)                                                        as first_seen_date,
    max(joined_date) filter (where not is_anchor)                               as last_merged_on
from {{ ref('person_members') }}
group by person_id
