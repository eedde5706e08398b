{#
  The running totals of the feature store (#16): lifetime figures per customer id kept incrementally
  (fs_customer_order_totals, fs_customer_session_totals) and the same figures per person for persons of several ids
  (fs_customer_orders_asof, fs_customer_tracking_asof). One macro per figure set, so both compute exactly the same.
#}

{% macro running_totals_since(rule=none) %}
  {#- The date a running-totals model continues from: its latest computed_as_of, or none (recompute every row) on a
      first or full build, for a run date before that (a backfill of an older snapshot), or when `rule` (a value the
      rows were computed with, kept in column stitch_rule) changed. -#}
  {%- if not (is_incremental() and execute) -%}{{- return(none) -}}{%- endif -%}
  {%- set rule_sql = ', min(stitch_rule), max(stitch_rule)' if rule is not none else '' -%}
  {%- set stored = run_query('select max(computed_as_of)' ~ rule_sql ~ ' from ' ~ this).rows[0] -%}
  {%- set today = run_date_value() -%}
  {%- if stored[0] is none or today is none or stored[0] > today -%}{{- return(none) -}}{%- endif -%}
  {%- if rule is not none and (stored[1] != rule or stored[2] != rule) -%}{{- return(none) -}}{%- endif -%}
  {{- return(stored[0]) -}}
{% endmacro %}


{% macro recomputed_ids(since, touched, totals) %}
    {#- the ids a running-totals run writes: every id it computed, the touched ones left without data, and on a
        full rebuild of an existing table every stored id (as "no data" when it has none as of the run date) -#}
    select customer_id from {{ totals }}
    {%- if since is not none %}
    where customer_id in (select customer_id from {{ touched }})
    union
    select customer_id from {{ touched }}
    {%- elif is_incremental() %}
    union
    select customer_id from {{ this }}
    {%- endif %}
{% endmacro %}


{% macro ids_with_order_changes_since(since) %}
    {#- the customer ids whose orders changed from the date `since` on: a customer-day state known since then (that
        date again: a rerun of it may have replaced its states), or a line a corrected landed file removed. The
        caller's model must depend on int_customer_daily_orders outside any `if` (a ref only inside a branch taken at
        run time is not seen when dbt parses the project). -#}
    select distinct customer_id
    from {{ ref('int_customer_daily_orders') }}
    where known_date between {{ date_literal(since) }} and {{ run_date() }}
    union
    select customer_id from ({{ reloaded_transactions(window_start=date_literal(since)) }}) where customer_id is not null
{% endmacro %}


{% macro order_total_columns() %}
  {{- return(['first_order_date', 'last_order_date', 'orders_count', 'purchase_days', 'items_count',
              'cancelled_orders_count', 'gross_revenue_eur', 'returned_revenue_eur', 'orders_with_return_count',
              'first_purchase_day_gross_eur', 'favourite_category', 'favourite_category_share',
              'distinct_categories']) -}}
{% endmacro %}


{% macro session_total_columns() %}
  {{- return(['sessions_total', 'last_session_date', 'first_touch_channel', 'last_touch_channel']) -}}
{% endmacro %}


{#
  A customer's lifetime order figures from its customer-day states (one row per customer_id and activity_date: the
  state an end-of-run_date snapshot sees): first and last order dates, sums, purchase days, the first purchase day's
  spend (BG/NBD leaves it out of the repeat-spend mean) and the favourite category. One row per customer_id of
  `states`, which is a CTE name. Used per customer id by fs_customer_order_totals (the nightly running totals) and per
  person by fs_customer_orders_asof (persons of several customer ids), so both compute exactly the same figures.
#}
{% macro order_lifetime_totals(states) %}
    select
        totals.customer_id,
        {%- for column in order_total_columns()[:10] %}
        totals.{{ column }},
        {%- endfor %}
        category_affinity.favourite_category,
        category_affinity.favourite_category_share,
        coalesce(category_affinity.distinct_categories, 0)                      as distinct_categories
    from (
        select
            customer_id,
            min(activity_date) filter (where orders_count > 0)                  as first_order_date,
            max(activity_date) filter (where orders_count > 0)                  as last_order_date,
            sum(orders_count)                                                   as orders_count,
            count(*) filter (where orders_count > 0)                            as purchase_days,
            sum(items_count)                                                    as items_count,
            sum(cancelled_orders_count)                                         as cancelled_orders_count,
            sum(gross_revenue_eur)                                              as gross_revenue_eur,
            sum(returned_revenue_eur)                                           as returned_revenue_eur,
            sum(returns_count)                                                  as orders_with_return_count,
            {{ first_by('gross_revenue_eur', 'activity_date', filter='orders_count > 0') }}
                                                                                as first_purchase_day_gross_eur
        from {{ states }}
        group by customer_id
    ) as totals
    left join (
        select
            customer_id,
            {{ first_by('category', 'gross_revenue_eur desc, category') }}          as favourite_category,
            {{ fdiv('max(gross_revenue_eur)', 'nullif(sum(gross_revenue_eur), 0)') }}          as favourite_category_share,
            count(*)                                                            as distinct_categories
        from (
            select customer_id, mix.category, sum(mix.gross_revenue_eur) as gross_revenue_eur
            from (select customer_id, {{ unnest_list('category_mix') }} as mix from {{ states }})
            group by customer_id, mix.category
        )
        group by customer_id
    ) as category_affinity on category_affinity.customer_id = totals.customer_id
{% endmacro %}


{% macro latest_customer_day_states(where) %}
    {#- each customer-day of int_customer_daily_orders as known at the end of run_date, among the rows matching
        `where` (a condition on the states' columns; it must keep or drop whole customer-days) -#}
    select *
    from {{ ref('int_customer_daily_orders') }}
    where known_date <= {{ run_date() }} and ({{ where }})
    qualify row_number() over (partition by customer_id, activity_date order by known_date desc) = 1
{% endmacro %}


{% macro attributed_sessions(cookies_where, name) -%}
    {#- CTEs ending in `<name>`: the sessions known at the end of run_date (each cookie-day's latest state) of the
        cookies matching `cookies_where` (a condition on anonymous_id and session_date that keeps or drops whole
        cookies, or whole cookie-days), stitched with every link of those cookies known then (macro stitch_sessions).
        A session's customer depends only on its own cookie's links, so any subset of cookies is stitched exactly
        as the whole history would be. -#}
{{ name }}__sessions as (

    select *
    from (
        select *
        from {{ ref('int_session_states') }}
        where known_date <= {{ run_date() }} and ({{ cookies_where }})
        qualify known_date = max(known_date) over (partition by anonymous_id, session_date)
    )
    where session_id is not null

),

{{ name }}__links as (

    select anonymous_id, customer_id, first_linked_at, last_linked_at
    from {{ ref('int_identity_links') }}
    where known_date <= {{ run_date() }}
      and anonymous_id in (select anonymous_id from {{ name }}__sessions)

),

{{ stitch_sessions(name ~ '__sessions', name ~ '__links', name) }}
{%- endmacro %}


{% macro session_lifetime_totals(sessions) -%}
    {#- a customer's lifetime tracking figures from its attributed sessions (one row per customer_id of `sessions`) -#}
    select
        customer_id,
        count(*)                                                                as sessions_total,
        max(session_date)                                                       as last_session_date,
        {{ first_by('channel', 'session_start_at, session_id') }}                    as first_touch_channel,
        {{ last_by('channel', 'session_start_at, session_id') }}                     as last_touch_channel
    from {{ sessions }}
    where customer_id is not null
    group by customer_id
{%- endmacro %}


{% macro products_known_at(date_sql) -%}
    {#- each product's version known at the end of `date_sql` (a date expression): the category a snapshot of that
        date files it under (a later re-categorisation does not move a past snapshot) -#}
    select product_id, category
    from {{ ref('stg_shop__products') }}
    where valid_from_date <= {{ date_sql }}
      and (valid_to_date is null or valid_to_date > {{ date_sql }})
{%- endmacro %}
