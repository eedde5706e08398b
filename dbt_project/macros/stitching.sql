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
{{ name }}__device_customers as (

    select anonymous_id, count(distinct customer_id) as device_customer_count
    from {{ links }}
    group by anonymous_id

),

-- one customer per cookie and instant, so ties resolve the same way on every run
{{ name }}__link_starts as (

    select anonymous_id, first_linked_at as linked_at, min(customer_id) as customer_id
    from {{ links }}
    group by anonymous_id, first_linked_at

),

{{ name }}__link_ends as (

    select anonymous_id, last_linked_at as linked_at, max(customer_id) as customer_id
    from {{ links }}
    group by anonymous_id, last_linked_at

),

{{ name }}__next_link as (

    select
        s.*,
        next_link.customer_id as next_linked_customer_id
    from {{ sessions }} as s
    asof left join {{ name }}__link_starts as next_link
        on  s.anonymous_id = next_link.anonymous_id
        and s.session_start_at <= next_link.linked_at

),

{{ name }}__both_links as (

    select
        s.*,
        previous_link.customer_id as previous_linked_customer_id
    from {{ name }}__next_link as s
    asof left join {{ name }}__link_ends as previous_link
        on  s.anonymous_id = previous_link.anonymous_id
        and s.session_start_at >= previous_link.linked_at

),

{{ name }} as (

    select
        s.* exclude (next_linked_customer_id, previous_linked_customer_id),
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
