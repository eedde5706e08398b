-- Identifiers that are NOT used for merging: linked to more than var identity_max_customers_per_identifier
-- customer ids (a shared family tablet, a shop-floor device, a test account's email, support@...). Merging through
-- them would glue unrelated people into one giant person. Listed here so analysts can see and review them.

select
    identifier_type,
    identifier,
    count(distinct customer_id)                                                 as customer_count,
    min(first_seen_date)                                                        as first_seen_date,
    max(last_seen_date)                                                         as last_seen_date,
    {{ var('identity_max_customers_per_identifier') }}::integer                 as max_customers_allowed
from {{ ref('int_identity_identifiers') }}
group by identifier_type, identifier
having count(distinct customer_id) > {{ var('identity_max_customers_per_identifier') }}::integer
