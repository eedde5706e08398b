{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='customer_id',
        on_schema_change='fail'
    )
}}
-- Running lifetime tracking totals, one row per customer id (not per person: fs_customer_tracking_asof applies the
-- identity graph), as of computed_as_of, the run date that last recomputed the row: sessions attributed to the id
-- (stitching with the links known then, macro stitch_sessions), the latest session date, first and last touch.
--
-- A session's customer depends only on its cookie's links, so a night recomputes only the customers linked to a
-- cookie that changed since the table's latest computed_as_of (a new or re-sessionized cookie-day of
-- int_session_states, or a new link of int_identity_links): whoever a changed cookie's sessions were attributed to
-- before, or are now, is linked to it. Their rows are rebuilt from every session of every cookie linked to them.
-- An id left without sessions keeps a row with has_sessions false. A run for a date before the table's latest
-- computed_as_of (a backfill of an older snapshot), or after the stitching rule changed (var
-- max_customers_per_device, kept in stitch_rule), recomputes every row as of that date.

{%- set rule = int_var('max_customers_per_device') %}
{%- set since = running_totals_since(rule) %}

with

{% if since is not none -%}
changed_cookies as (

    select anonymous_id
    from {{ ref('int_session_states') }}
    where known_date between {{ date_literal(since) }} and {{ run_date() }}
    union
    select anonymous_id
    from {{ ref('int_identity_links') }}
    where known_date between {{ date_literal(since) }} and {{ run_date() }}

),

touched as (

    select distinct customer_id
    from {{ ref('int_identity_links') }}
    where known_date <= {{ run_date() }}
      and anonymous_id in (select anonymous_id from changed_cookies)

),

touched_cookies as (

    select distinct anonymous_id
    from {{ ref('int_identity_links') }}
    where known_date <= {{ run_date() }}
      and customer_id in (select customer_id from touched)

),
{%- endif %}

{{ attributed_sessions(
    'anonymous_id in (select anonymous_id from touched_cookies)' if since is not none else 'true', 'stitched') }},

totals as (

    {{ session_lifetime_totals('stitched') }}

),

recomputed as (

    {{ recomputed_ids(since, 'touched', 'totals') }}

)

select
    recomputed.customer_id,
    {{ run_date() }}                                                            as computed_as_of,
    {{ rule }}                                                                  as stitch_rule,
    totals.customer_id is not null                                              as has_sessions,
    {%- for column in session_total_columns() %}
    totals.{{ column }}{% if not loop.last %},{% endif %}
    {%- endfor %}
from recomputed
left join totals on totals.customer_id = recomputed.customer_id
