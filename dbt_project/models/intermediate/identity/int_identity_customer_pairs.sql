-- The edges of the identity graph: two customer ids (left_customer_id < right_customer_id) sharing at least one identifier
-- that is not guarded (the columns end in _customer_id so that erase-customer sweeps both ends). linked_date is
-- the first day the pair was known to share one (both ends known).

with usable as (

    select identifiers.*
    from {{ ref('int_identity_identifiers') }} as identifiers
    anti join {{ ref('int_identity_guarded_identifiers') }} as guarded
        on guarded.identifier_type = identifiers.identifier_type
       and guarded.identifier = identifiers.identifier

)

select
    a.customer_id                                                               as left_customer_id,
    b.customer_id                                                               as right_customer_id,
    min(greatest(a.first_seen_date, b.first_seen_date))                         as linked_date,
    {{ distinct_sorted_list('a.identifier_type') }}                 as identifier_types,
    count(*)                                                                    as shared_identifiers
from usable as a
inner join usable as b
    on b.identifier_type = a.identifier_type
   and b.identifier = a.identifier
   and b.customer_id > a.customer_id
group by a.customer_id, b.customer_id
