-- Working table for the run's snapshot: one row per person (customer_id = its primary member, int_person_keys) with
-- at least one session attributed to one of its customer ids at the end of run_date. Sessions are those known then (each cookie-day's latest state known by run_date) and stitching uses
-- only the logins and purchases known then, so later evidence never re-attributes a past snapshot.

with sessions as (

    -- each cookie-day's latest state known by run_date (an empty state, session_id null, has no sessions)
    select *
    from (
        select *
        from {{ ref('int_session_states') }}
        where known_date <= {{ run_date() }}
        qualify known_date = max(known_date) over (partition by anonymous_id, session_date)
    )
    where session_id is not null

),

links as (

    select anonymous_id, customer_id, first_linked_at, last_linked_at
    from {{ ref('int_identity_links') }}
    where known_date <= {{ run_date() }}

),

{{ stitch_sessions('sessions', 'links', 'stitched') }}

select
    customer_id,
    {{ run_date() }}                                                                as as_of_date,
    count(*)                                                                        as sessions_total,
    {%- for days in [7, 30, 90] %}
    count(*) filter (where session_date > {{ run_date() }} - {{ days }})            as sessions_{{ days }}d,
    coalesce(sum(product_views) filter (where session_date > {{ run_date() }} - {{ days }}), 0)
                                                                                    as product_views_{{ days }}d,
    coalesce(sum(cart_adds) filter (where session_date > {{ run_date() }} - {{ days }}), 0)
                                                                                    as cart_adds_{{ days }}d,
    {%- endfor %}
    count(*) filter (where is_abandoned_cart and session_date > {{ run_date() }} - 90)
                                                                                    as abandoned_carts_90d,
    count(*) filter (where cart_adds > 0 and session_date > {{ run_date() }} - 90)  as cart_sessions_90d,
    {%- for device in ['desktop', 'mobile', 'tablet'] %}
    count(*) filter (where device_type = '{{ device }}' and session_date > {{ run_date() }} - 90)
                                                                                    as {{ device }}_sessions_90d,
    {%- endfor %}
    {{ days_between('max(session_date)', run_date()) }}                                      as days_since_last_visit,
    {{ first_by('channel', 'session_start_at, session_id') }}                            as first_touch_channel,
    {{ last_by('channel', 'session_start_at, session_id') }}                             as last_touch_channel
from {{ by_person('stitched') }}
where customer_id is not null
group by customer_id
