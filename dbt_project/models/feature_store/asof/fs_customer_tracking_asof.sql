-- Working table for the run's snapshot: one row per person (customer_id = its primary member, int_person_keys) with
-- at least one session attributed to one of its customer ids at the end of run_date. Sessions are those known then
-- (each cookie-day's latest state known by run_date) and stitching uses only the logins and purchases known then, so
-- later evidence never re-attributes a past snapshot.
--
-- Lifetime figures (sessions_total, last visit, first and last touch): a person of one customer id takes its running
-- totals (fs_customer_session_totals, recomputed nightly only for the customers of the cookies that changed); a
-- person of several is computed here from the sessions of its members' cookies. Windows (7/30/90 days) stitch only
-- the sessions of the last 90 days. So the night no longer stitches every session ever (#16).

with keys as (

    select customer_id, person_customer_id, person_customer_count
    from {{ ref('int_person_keys') }}

),

{{ attributed_sessions(
    'anonymous_id in (select anonymous_id from ' ~ ref('int_identity_links') ~ ' where known_date <= ' ~ run_date()
    ~ ' and customer_id in (select customer_id from keys where person_customer_count > 1))', 'shared') }},

{{ attributed_sessions('session_date > ' ~ run_date() ~ ' - 90', 'recent') }},

lifetime as (

    select totals.customer_id{% for column in session_total_columns() %}, totals.{{ column }}{% endfor %}
    from {{ ref('fs_customer_session_totals') }} as totals
    left join keys on keys.customer_id = totals.customer_id
    where totals.has_sessions and coalesce(keys.person_customer_count, 1) = 1
    union all
    {{ session_lifetime_totals(by_person('(select * from shared where customer_id in (select customer_id from keys where person_customer_count > 1))')) }}

),

windows as (

    select
        customer_id,
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
                                                                                    as {{ device }}_sessions_90d
        {%- if not loop.last %},{% endif %}
        {%- endfor %}
    from {{ by_person('recent') }}
    where customer_id is not null
    group by customer_id

)

select
    lifetime.customer_id,
    {{ run_date() }}                                                                as as_of_date,
    lifetime.sessions_total,
    {%- for days in [7, 30, 90] %}
    coalesce(windows.sessions_{{ days }}d, 0)                                       as sessions_{{ days }}d,
    coalesce(windows.product_views_{{ days }}d, 0)                                  as product_views_{{ days }}d,
    coalesce(windows.cart_adds_{{ days }}d, 0)                                      as cart_adds_{{ days }}d,
    {%- endfor %}
    coalesce(windows.abandoned_carts_90d, 0)                                        as abandoned_carts_90d,
    coalesce(windows.cart_sessions_90d, 0)                                          as cart_sessions_90d,
    {%- for device in ['desktop', 'mobile', 'tablet'] %}
    coalesce(windows.{{ device }}_sessions_90d, 0)                                  as {{ device }}_sessions_90d,
    {%- endfor %}
    {{ days_between('lifetime.last_session_date', run_date()) }}                    as days_since_last_visit,
    lifetime.first_touch_channel,
    lifetime.last_touch_channel
from lifetime
left join windows on windows.customer_id = lifetime.customer_id
