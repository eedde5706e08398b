{{
    config(
        materialized='incremental',
        partition_by=date_partition('known_date'),
        incremental_strategy='replace_window',
        window_column='known_date',
        on_schema_change='fail'
    )
}}
{#- lookback_start() asks the warehouse for the table's latest known_date (catch-up): once per model, not per use -#}
{%- set window_start = lookback_start() %}
-- Sessions as they were known at the end of each day: one row per session per known_date at which the sessions
-- starting on its cookie-day (anonymous_id, session_date) changed. For a date D, the latest known_date <= D of
-- each cookie-day gives exactly the sessions an end-of-D snapshot could see; the latest overall gives today's.
--
-- Incremental: recomputes the states of known dates run_date - lookback_days .. run_date, from the events that
-- became known then (late events merge into the right sessions). Cost follows the new events, not the history.
--
-- A state with no session starting on its day (a late event just before midnight absorbed the day's only
-- session into the previous day's) is kept as one row with session_id null, so that readers taking each
-- cookie-day's latest state stop seeing the absorbed session. Readers drop those rows after picking the state.

-- `new_events` and `state_events` read the staging view each on their own, not through one shared CTE: DuckDB
-- materialises a CTE read twice, and that materialised every event of the history every night (it was
-- the model's main cost). Read separately, each scan gets its own filters pushed into raw.

with new_events as (

    select anonymous_id, occurred_date, known_date
    from {{ ref('stg_shop__tracking_events') }}
    where known_date <= {{ run_date() }}
    {% if is_incremental() -%}
      and known_date >= {{ window_start }}
      and {{ landed_or_occurred_since(window_start) }}
    {%- endif %}

),

-- A new event changes the sessions starting on its own day and, through sessions that cross midnight,
-- on the days before and after: those cookie-days get a new state at the event's known date.
changed_cookie_days as (

    select distinct
        new_events.anonymous_id,
        new_events.occurred_date + day_offset.days   as session_date,
        new_events.known_date                        as state_known_date
    from new_events
    cross join (values (-1), (0), (1)) as day_offset(days)

),

-- Each state sees the cookie's events known by then from the day before (sessions running over midnight)
-- to the day after its session_date.
state_events as (

    select
        changed.session_date,
        changed.state_known_date,
        events.*
    from changed_cookie_days as changed
    inner join (
        select
            event_id, event_type, occurred_at, occurred_date, anonymous_id, customer_id, page_url, product_id,
            order_id, device_type, os, browser, referrer, utm_source, utm_medium, utm_campaign, known_date
        from {{ ref('stg_shop__tracking_events') }}
        where known_date <= {{ run_date() }}
        {% if is_incremental() -%}
          -- prunes the scan (on the raw timestamp, so DuckDB can skip old row groups), and keeps only the cookies
          -- that changed (late events make the date range long, the cookies stay few); the join decides
          and occurred_at >= (select {{ day_start_utc('min(session_date) - 1') }} from changed_cookie_days)
          and anonymous_id in (select anonymous_id from changed_cookie_days)
        {%- endif %}
    ) as events
        on  events.anonymous_id = changed.anonymous_id
        and events.occurred_date between changed.session_date - 1 and changed.session_date + 1
        and events.known_date <= changed.state_known_date

),

{{ sessionize('state_events', 'sessionized', partition_by=['anonymous_id', 'session_date', 'state_known_date']) }},

facts as (

    {{ session_facts('sessionized', partition_by=['anonymous_id', 'session_date', 'state_known_date']) }}

),

sessions as (

    select
        session_id,
        anonymous_id,
        session_date,
        state_known_date                                                       as known_date,
        session_start_at,
        session_end_at,
        {{ seconds_between('session_start_at', 'session_end_at') }}                   as duration_seconds,
        events_count,
        page_views,
        product_views,
        searches,
        cart_adds,
        cart_removes,
        checkouts,
        purchases,
        purchases > 0                                                          as has_purchase,
        cart_adds > 0 and purchases = 0                                        as is_abandoned_cart,
        order_id,
        landing_page,
        referrer,
        utm_source,
        utm_medium,
        utm_campaign,
        {{ marketing_channel('utm_source', 'utm_medium', 'utm_campaign', 'referrer') }} as channel,
        coalesce(device_type, 'unknown')                                       as device_type,
        os,
        browser,
        logged_in_customer_id
    from facts
    -- a state describes the sessions that start on its own day; the neighbouring days only gave context
    where {{ utc_date('session_start_at') }} = session_date

),

-- changed cookie-days whose recomputed state has no session starting that day ...
sessionless_cookie_days as (

    select distinct changed.anonymous_id, changed.session_date, changed.state_known_date
    from changed_cookie_days as changed
    where not exists (
        select 1 from sessions
        where sessions.anonymous_id = changed.anonymous_id
          and sessions.session_date = changed.session_date
          and sessions.known_date = changed.state_known_date
    )

),

-- ... but which had sessions in an earlier state (this run's or, for older known dates, the table's)
emptied_cookie_days as (

    select *
    from sessionless_cookie_days as candidate
    where exists (
        select 1 from sessions
        where sessions.anonymous_id = candidate.anonymous_id
          and sessions.session_date = candidate.session_date
          and sessions.known_date < candidate.state_known_date
    )
    {% if is_incremental() -%}
    union
    select candidate.*
    from sessionless_cookie_days as candidate
    -- the table's states of the candidates' cookies only: the candidates are few, the table is the whole history
    -- (a correlated EXISTS against the table was decorrelated into a join built over every stored state)
    inner join (
        select distinct anonymous_id, session_date
        from {{ this }}
        where known_date < {{ window_start }}
          and session_id is not null
          and anonymous_id in (select anonymous_id from sessionless_cookie_days)
    ) as earlier
        on  earlier.anonymous_id = candidate.anonymous_id
        and earlier.session_date = candidate.session_date
    {%- endif %}

)

select * from sessions

union all

-- the columns a state row has not are null: they come from a `sessions` row that never matches (a union by
-- position that works on DuckDB and Spark SQL alike, in the column order of `sessions`)
select
    cast(null as string)                                                  as session_id,
    emptied.anonymous_id,
    emptied.session_date,
    emptied.state_known_date                                               as known_date,
    no_session.* except (session_id, anonymous_id, session_date, known_date)
from emptied_cookie_days as emptied
left join sessions as no_session on false
