-- One row per customer known today (a profile or an order): the current profile version, without personal
-- data (email and names: pii.pii_customer_contacts), and when the customer was first seen.

with profiles as (

    select * from {{ ref('stg_shop__customers') }}
    where is_latest

),

profile_history as (

    select customer_id, count(*) as profile_versions, min(known_date) as first_profile_date
    from {{ ref('stg_shop__customers') }}
    group by customer_id

),

buyers as (

    select
        customer_id,
        min(order_date) filter (where line_type = 'sale')               as first_order_date
    from {{ ref('int_order_lines') }}
    group by customer_id

),

customers as (

    select customer_id from profiles
    union
    select customer_id from buyers

)

select
    customers.customer_id::string                                      as customer_id,
    (profiles.customer_id is not null)::boolean                         as has_profile,
    profiles.signup_at::{{ type_timestamptz() }}                                     as signup_at,
    profiles.signup_date::date                                          as signup_date,
    profiles.country::string                                           as country,
    profiles.acquisition_channel::string                               as acquisition_channel,
    coalesce(profiles.marketing_consent, false)::boolean                as marketing_consent,
    profiles.consent_updated_at::{{ type_timestamptz() }}                            as consent_updated_at,
    coalesce(profile_history.profile_versions, 0)::integer              as profile_versions,
    buyers.first_order_date::date                                       as first_order_date,
    least(profile_history.first_profile_date, profiles.signup_date, buyers.first_order_date)::date
                                                                        as first_seen_date
from customers
left join profiles        on profiles.customer_id = customers.customer_id
left join profile_history on profile_history.customer_id = customers.customer_id
left join buyers          on buyers.customer_id = customers.customer_id
