{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='anonymous_id',
        on_schema_change='fail'
    )
}}
-- One row per web/app session, as known today, attributed to a customer by identity stitching.
-- Incremental per cookie: a cookie with new sessions or new identity evidence in the run's window gets all its
-- sessions rebuilt, so a login attributes its earlier anonymous sessions retroactively.

with changed_cookies as (

    {% if is_incremental() -%}
    select anonymous_id from {{ ref('int_session_states') }}
    where known_date between {{ lookback_start() }} and {{ run_date() }}
    union
    select anonymous_id from {{ ref('int_identity_links') }}
    where known_date between {{ lookback_start() }} and {{ run_date() }}
    {%- else -%}
    select distinct anonymous_id from {{ ref('int_session_states') }}
    {%- endif %}

),

-- today's version of each cookie-day: its latest state (an empty state, session_id null, has no sessions)
sessions as (

    select *
    from (
        select states.*
        from {{ ref('int_session_states') }} as states
        semi join changed_cookies on changed_cookies.anonymous_id = states.anonymous_id
        qualify states.known_date = max(states.known_date) over (partition by states.anonymous_id, states.session_date)
    )
    where session_id is not null

),

links as (

    select links.*
    from {{ ref('int_identity_links') }} as links
    semi join changed_cookies on changed_cookies.anonymous_id = links.anonymous_id

),

{{ stitch_sessions('sessions', 'links', 'stitched') }}

select
    session_id::string                        as session_id,
    anonymous_id::string                      as anonymous_id,
    customer_id::string                       as customer_id,
    attribution::string                       as attribution,
    device_customer_count::integer             as device_customer_count,
    session_date::date                         as session_date,
    session_start_at::{{ type_timestamptz() }}              as session_start_at,
    session_end_at::{{ type_timestamptz() }}                as session_end_at,
    duration_seconds::bigint                   as duration_seconds,
    events_count::integer                      as events_count,
    page_views::integer                        as page_views,
    product_views::integer                     as product_views,
    searches::integer                          as searches,
    cart_adds::integer                         as cart_adds,
    checkouts::integer                         as checkouts,
    has_purchase::boolean                      as has_purchase,
    is_abandoned_cart::boolean                 as is_abandoned_cart,
    order_id::string                          as order_id,
    landing_page::string                      as landing_page,
    referrer::string                          as referrer,
    utm_source::string                        as utm_source,
    utm_medium::string                        as utm_medium,
    utm_campaign::string                      as utm_campaign,
    channel::string                           as channel,
    device_type::string                       as device_type,
    os::string                                as os,
    browser::string                           as browser,
    known_date::date                           as known_date
from stitched
