{#
  Identity stitching, shared by fct_sessions (today's links) and the feature store (links known at as_of_date).

  stitch_sessions(sessions, links, name): emits CTEs ending in `<name>` = every column of `sessions` plus
  customer_id, attribution and device_customer_count.
    sessions: anonymous_id, session_start_at, logged_in_customer_id, ...
    links:    anonymous_id, customer_id, first_linked_at, last_linked_at (several rows per pair are fine)

  Rules, in order:
    logged_in      the session itself carried a customer_id (login) -> that customer
    shared_device  the cookie is linked to more than var max_customers_per_device customers -> not attributed
    retroactive    an anonymous session -> the customer of the cookie's next link (login or purchase) at or
                   after the session start: earlier anonymous browsing belongs to whoever identified next
    returning      no later link -> the customer of the cookie's latest earlier link
    anonymous      the cookie was never linked
#}
{% macro stitch_sessions(sessions, links, name) -%}
    {%- set max_customers = int_var('max_customers_per_device') -%}
-- only the links of the sessions' cookies: every rule below is per cookie, so this changes no result, and a night
-- that stitches a day's sessions no longer reads (and builds the as-of joins on) every link of the history
{{ name }}__cookie_links as (

    select *
    from {{ links }}
    where anonymous_id in (select anonymous_id from {{ sessions }})

),

{{ name }}__device_customers as (

    select anonymous_id, count(distinct customer_id) as device_customer_count
    from {{ name }}__cookie_links
    group by anonymous_id

),

-- one customer per cookie and instant, so ties resolve the same way on every run
{{ name }}__link_starts as (

    select anonymous_id, first_linked_at as linked_at, min(customer_id) as customer_id
    from {{ name }}__cookie_links
    group by anonymous_id, first_linked_at

),

{{ name }}__link_ends as (

    select anonymous_id, last_linked_at as linked_at, max(customer_id) as customer_id
    from {{ name }}__cookie_links
    group by anonymous_id, last_linked_at

),

{{ name }}__next_link as (

    {{ asof_lookup(sessions, name ~ '__link_starts', 'anonymous_id', 'session_start_at', 'linked_at', 'next',
                   'customer_id', 'next_linked_customer_id') }}

),

{{ name }}__both_links as (

    {{ asof_lookup(name ~ '__next_link', name ~ '__link_ends', 'anonymous_id', 'session_start_at', 'linked_at',
                   'previous', 'customer_id', 'previous_linked_customer_id') }}

),

{{ name }} as (

    select
        s.* except (next_linked_customer_id, previous_linked_customer_id),
        coalesce(d.device_customer_count, 0)                              as device_customer_count,
        case
            when s.logged_in_customer_id is not null                      then s.logged_in_customer_id
            when coalesce(d.device_customer_count, 0) > {{ max_customers }} then null
            else coalesce(s.next_linked_customer_id, s.previous_linked_customer_id)
        end                                                               as customer_id,
        case
            when s.logged_in_customer_id is not null                      then 'logged_in'
            when coalesce(d.device_customer_count, 0) > {{ max_customers }} then 'shared_device'
            when s.next_linked_customer_id is not null                    then 'retroactive'
            when s.previous_linked_customer_id is not null                then 'returning'
            else 'anonymous'
        end                                                               as attribution
    from {{ name }}__both_links as s
    left join {{ name }}__device_customers as d on d.anonymous_id = s.anonymous_id

)
{%- endmacro %}


{#
  asof_lookup(left, right, key, left_time, right_time, direction, value, as_name): every row of `left` plus
  `as_name` = `value` of the `right` row with the same key whose right_time is the nearest at or after left_time
  (direction 'next') or at or before it ('previous'); null when there is none. `right` has one row per key and time.
  DuckDB: an ASOF join. Spark SQL has none: both sides in one stream per key, ordered by time, and the nearest
  right value carried to each left row by a window (ignore nulls), which is also linear in the rows.
#}
{% macro asof_lookup(left, right, key, left_time, right_time, direction, value, as_name) %}
  {%- if direction not in ('next', 'previous') -%}
    {{ exceptions.raise_compiler_error("asof_lookup: direction must be 'next' or 'previous', got " ~ direction) }}
  {%- endif -%}
  {{- return(adapter.dispatch('asof_lookup', 'c360')(left, right, key, left_time, right_time, direction, value, as_name)) -}}
{% endmacro %}

{% macro default__asof_lookup(left, right, key, left_time, right_time, direction, value, as_name) %}
    select
        l.*,
        r.{{ value }} as {{ as_name }}
    from {{ left }} as l
    asof left join {{ right }} as r
        on  l.{{ key }} = r.{{ key }}
        and l.{{ left_time }} {{ '<=' if direction == 'next' else '>=' }} r.{{ right_time }}
{% endmacro %}

{% macro spark__asof_lookup(left, right, key, left_time, right_time, direction, value, as_name) %}
    {#- at equal times the right row counts: it sorts after the left row for 'next', before it for 'previous' -#}
    select _asof.l.*, _asof.found as {{ as_name }}
    from (
        select
            l,
            _side,
            case when _key is not null then
            {%- if direction == 'next' %}
                first_value(_value, true) over (partition by _key order by _time, _side desc
                                                rows between current row and unbounded following)
            {%- else %}
                last_value(_value, true) over (partition by _key order by _time, _side
                                               rows between unbounded preceding and current row)
            {%- endif %}
            end as found
        from (
            select struct(l.*) as l, l.{{ key }} as _key, l.{{ left_time }} as _time, 1 as _side, null as _value
            from {{ left }} as l
            union all
            select null, r.{{ key }}, r.{{ right_time }}, 0, r.{{ value }}
            from {{ right }} as r
            where r.{{ key }} is not null and r.{{ right_time }} is not null
        )
    ) as _asof
    where _asof._side = 1
{% endmacro %}
