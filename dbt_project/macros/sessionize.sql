{#
  Sessionization, shared by every model that cuts events into sessions.

  sessionize(events, name, partition_by): emits CTEs `<name>__gaps`, `<name>__visits` and `<name>` (no leading
  `with`, no trailing comma). `events` must have event_id, occurred_at, utm_campaign and the partition columns.
  Within a partition (a cookie, optionally per state), events ordered by (occurred_at, event_id) start a new
  session when
    - the gap to the previous event exceeds var session_timeout_minutes (a new "visit"), or
    - the event carries a utm_campaign different from the last campaign seen earlier in the same visit
      (arriving from a new campaign starts a new session even without a pause, as web analytics tools do).
  `<name>` adds is_session_start and session_index (1, 2, ... within the partition).

  session_facts(sessionized, partition_by): one row per session with its facts.
#}

{% macro sessionize(events, name, partition_by=['anonymous_id']) -%}
    {%- set part = partition_by | join(', ') -%}
    {%- set timeout = int_var('session_timeout_minutes') -%}
{{ name }}__gaps as (

    select
        *,
        coalesce(
            occurred_at - lag(occurred_at) over (partition by {{ part }} order by occurred_at, event_id)
                > interval '{{ timeout }} minutes',
            true
        ) as is_visit_start
    from {{ events }}

),

{{ name }}__visits as (

    select
        *,
        sum(is_visit_start::int) over (
            partition by {{ part }} order by occurred_at, event_id rows between unbounded preceding and current row
        ) as visit_index
    from {{ name }}__gaps

),

{{ name }}__campaigns as (

    select
        *,
        {{ last_value_ignore_nulls('utm_campaign') }} over (
            partition by {{ part }}, visit_index order by occurred_at, event_id
            rows between unbounded preceding and 1 preceding
        ) as previous_campaign_in_visit
    from {{ name }}__visits

),

{{ name }} as (

    select
        * except (is_visit_start, visit_index, previous_campaign_in_visit, is_session_start_flag),
        is_session_start_flag as is_session_start,
        sum(is_session_start_flag::int) over (
            partition by {{ part }} order by occurred_at, event_id rows between unbounded preceding and current row
        ) as session_index
    from (
        select
            *,
            is_visit_start
              or (utm_campaign is not null and utm_campaign is distinct from previous_campaign_in_visit)
              as is_session_start_flag
        from {{ name }}__campaigns
    )

)
{%- endmacro %}


{% macro session_facts(sessionized, partition_by=['anonymous_id']) -%}
    {%- set part = partition_by | join(', ') -%}
    select
        {{ part }},
        session_index,
        md5(anonymous_id || '|' || {{ first_by('event_id', 'occurred_at, event_id') }})              as session_id,
        min(occurred_at)                                                                          as session_start_at,
        max(occurred_at)                                                                          as session_end_at,
        count(*)                                                                                  as events_count,
        count(*) filter (where event_type = 'page_view')                                          as page_views,
        count(*) filter (where event_type = 'product_view')                                       as product_views,
        count(*) filter (where event_type = 'search')                                             as searches,
        count(*) filter (where event_type = 'add_to_cart')                                        as cart_adds,
        count(*) filter (where event_type = 'remove_from_cart')                                   as cart_removes,
        count(*) filter (where event_type = 'checkout')                                           as checkouts,
        count(*) filter (where event_type = 'purchase')                                           as purchases,
        {{ first_by('order_id', 'occurred_at, event_id', filter="event_type = 'purchase' and order_id is not null") }}
                                                                                                  as order_id,
        {{ first_by('page_url', 'occurred_at, event_id') }}                                            as landing_page,
        {{ first_by('referrer', 'occurred_at, event_id') }}                                            as referrer,
        {{ first_by('utm_source', 'occurred_at, event_id') }}                                          as utm_source,
        {{ first_by('utm_medium', 'occurred_at, event_id') }}                                          as utm_medium,
        {{ first_by('utm_campaign', 'occurred_at, event_id') }}                                        as utm_campaign,
        {{ first_by('device_type', 'occurred_at, event_id', filter='device_type is not null') }}  as device_type,
        {{ first_by('os', 'occurred_at, event_id', filter='os is not null') }}                    as os,
        {{ first_by('browser', 'occurred_at, event_id', filter='browser is not null') }}          as browser,
        -- the customer logged in during the session (the last one, if the session saw a change of account)
        {{ last_by('customer_id', 'occurred_at, event_id', filter='customer_id is not null') }}   as logged_in_customer_id,
        max(known_date)                                                                           as events_known_date
    from {{ sessionized }}
    group by {{ part }}, session_index
{%- endmacro %}
