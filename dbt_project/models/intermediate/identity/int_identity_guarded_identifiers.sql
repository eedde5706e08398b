-- Identifiers that are NOT used for merging, with the reason (guard_reason):
--   too_many_customers   linked to more than var identity_max_customers_per_identifier customer ids (a shared family
--                        tablet, a shop-floor device, a test account's email, support@...). Merging through them would
--                        glue unrelated people into one giant person.
--   conflicting_emails   a cookie / device id on which two customer ids log in that each have an email and share none
--                        (a couple's laptop, a household's phone). A device is weaker evidence than an email: two
--                        different known emails on one device are two people until an email links them. Merging them
--                        would also make an erasure request of one erase the other (erasure follows the graph).
-- Listed here so analysts can see and review them. docs/identity.md, "Building the graph".

with identifiers as (

    select * from {{ ref('int_identity_identifiers') }}

),

emails as (

    select distinct customer_id, identifier as email_sha256
    from identifiers
    where identifier_type = 'email_sha256'

),

device_customers as (

    select distinct identifier, customer_id
    from identifiers
    where identifier_type = 'anonymous_id'

),

-- devices with two customer ids that both have an email and have no email in common
conflicting_devices as (

    select distinct a.identifier
    from device_customers as a
    inner join device_customers as b on b.identifier = a.identifier and b.customer_id > a.customer_id
    where exists (select 1 from emails where emails.customer_id = a.customer_id)
      and exists (select 1 from emails where emails.customer_id = b.customer_id)
      and not exists (
          select 1
          from emails as ea
          inner join emails as eb on eb.email_sha256 = ea.email_sha256
          where ea.customer_id = a.customer_id and eb.customer_id = b.customer_id
      )

),

summary as (

    select
        identifier_type,
        identifier,
        count(distinct customer_id)                                             as customer_count,
        min(first_seen_date)                                                    as first_seen_date,
        max(last_seen_date)                                                     as last_seen_date
    from identifiers
    group by identifier_type, identifier

)

select
    summary.identifier_type,
    summary.identifier,
    summary.customer_count,
    summary.first_seen_date,
    summary.last_seen_date,
    {{ var('identity_max_customers_per_identifier') }}::integer                 as max_customers_allowed,
    case
        when summary.customer_count > {{ var('identity_max_customers_per_identifier') }}::integer
            then 'too_many_customers'
        else 'conflicting_emails'
    end                                                                         as guard_reason
from summary
left join conflicting_devices
    on summary.identifier_type = 'anonymous_id' and conflicting_devices.identifier = summary.identifier
where summary.customer_count > {{ var('identity_max_customers_per_identifier') }}::integer
   or conflicting_devices.identifier is not null
