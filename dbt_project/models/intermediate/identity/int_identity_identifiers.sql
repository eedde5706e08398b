-- Every key that says two customer ids may be one person: one row per customer id, identifier and kind.
-- Kinds: `email_sha256` (sha256 of lower(trim(email)) from the customer's profile or from a vendor identify call's
-- traits.email (Segment/RudderStack, kept in vendor_extra); the email itself never leaves the pii schema and raw
-- vendor_extra, and a source that only knows the hash joins on the same value) and `anonymous_id` (a cookie / device id with identity
-- evidence, int_identity_links). Vendor user ids (Segment/Snowplow/GA4 userId) land as customer_id, so they are
-- the graph's nodes, not identifiers. Only what is known by run_date counts, so a rebuild of a past date sees the
-- graph of that date; a link whose source row is gone is gone at the next build (the graph is rebuilt, not appended).

with customer_emails as (

    -- the current email of each customer as of run_date: a changed email withdraws the old link
    select
        customer_id::string                                                    as customer_id,
        lower(trim(email::string))                                             as normalized_email,
        greatest({{ utc_date('updated_at') }}, _dt)                             as known_date
    from {{ source('shop', 'customers') }}
    where greatest({{ utc_date('updated_at') }}, _dt) <= {{ run_date() }}
    qualify row_number() over (
        partition by customer_id
        order by updated_at desc nulls last, _dt desc, _loaded_at desc, _source_file desc, _source_line desc
    ) = 1

),

first_emails as (

    -- when this customer first had this email (an unchanged email re-sent later keeps its first date)
    select
        customer_id::string                                                    as customer_id,
        lower(trim(email::string))                                             as normalized_email,
        min(greatest({{ utc_date('updated_at') }}, _dt))                        as first_seen_date
    from {{ source('shop', 'customers') }}
    where greatest({{ utc_date('updated_at') }}, _dt) <= {{ run_date() }}
    group by all

),

emails as (

    select
        current.customer_id,
        'email_sha256'                                                          as identifier_type,
        {{ sha256_hex('current.normalized_email') }}                                        as identifier,
        first_emails.first_seen_date,
        current.known_date                                                      as last_seen_date
    from customer_emails as current
    inner join first_emails
        on first_emails.customer_id = current.customer_id
       and first_emails.normalized_email = current.normalized_email
    where current.normalized_email is not null and current.normalized_email <> ''

),

identify_emails as (

    -- an identify call names the email the visitor gave (a guest checkout form, a newsletter sign-up)
    select
        customer_id,
        'email_sha256'                                                          as identifier_type,
        {{ sha256_hex("lower(trim(" ~ json_text('vendor_extra', '$.traits.email') ~ "))") }}  as identifier,
        min(known_date)                                                         as first_seen_date,
        max(known_date)                                                         as last_seen_date
    from {{ ref('stg_shop__tracking_events') }}
    where known_date <= {{ run_date() }}
      and customer_id is not null
      and vendor_extra is not null
      and nullif(trim({{ json_text('vendor_extra', '$.traits.email') }}), '') is not null
    group by all

),

cookies as (

    select
        customer_id,
        'anonymous_id'                                                          as identifier_type,
        anonymous_id                                                            as identifier,
        min(known_date)                                                         as first_seen_date,
        max(known_date)                                                         as last_seen_date
    from {{ ref('int_identity_links') }}
    where known_date <= {{ run_date() }}
    group by customer_id, anonymous_id

)

select customer_id, identifier_type, identifier, first_seen_date, last_seen_date from emails
union all
-- an identify with the profile's own email adds nothing new: one row per customer and identifier
select customer_id, identifier_type, identifier, first_seen_date, last_seen_date
from identify_emails
anti join emails using (customer_id, identifier_type, identifier)
union all
select customer_id, identifier_type, identifier, first_seen_date, last_seen_date from cookies
