{{
    config(
        materialized='incremental',
        incremental_strategy='replace_where',
        replace_where='fct_sessions_rebuilt_days',
        on_schema_change='fail'
    )
}}
-- One row per web/app session, as known today, attributed to a customer by identity stitching.
-- Incremental per cookie-day: a cookie-day with a new state in the run's window (new or late events) gets its
-- sessions rebuilt, and a cookie with new identity evidence in the window gets every day rebuilt, so a login
-- attributes its earlier anonymous sessions retroactively. A session's customer depends only on its cookie's links,
-- so the other days of a cookie without new links keep their rows: a night no longer re-reads and re-stitches the
-- whole history of every cookie that came back (#16). The strategy deletes the stored rows of the days being rebuilt
-- (macros/fct_sessions.sql) and inserts the night's rows in one step, so a day whose latest state has no sessions
-- left (its events were taken out by a corrected file) loses its old rows.

with

{% if is_incremental() -%}
changed_days as (

    {{ fct_sessions_changed_days() }}

),
{%- endif %}

-- today's version of each cookie-day (of the changed ones): its latest state (an empty state, session_id null, has
-- no sessions)
sessions as (

    select *
    from (
        select states.*
        from {{ ref('int_session_states') }} as states
        {%- if is_incremental() %}
        semi join changed_days
            on  changed_days.anonymous_id = states.anonymous_id
            and changed_days.session_date = states.session_date
        {%- endif %}
        qualify states.known_date = max(states.known_date) over (partition by states.anonymous_id, states.session_date)
    )
    where session_id is not null

),

-- stitch_sessions reads only the links of the sessions' cookies
links as (

    select * from {{ ref('int_identity_links') }}

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
