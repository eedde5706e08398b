-- Working table for the run's snapshot: one row per person (customer_id = its primary member, int_person_keys)
-- with an order, cancellation or return known at the end of run_date, with their order features as of then, over
-- every customer id of the person.
--
-- Lifetime figures: a person of one customer id takes its running totals (fs_customer_order_totals, recomputed
-- nightly only for the customer ids whose states changed); a person of several is summed from its members'
-- customer-day states here (a guest order and the account's order on one day are one purchase day, which per-id
-- totals cannot add up). Windows (7/30/90 days) read the states of the last 90 days only. So the night no longer
-- reads every customer's whole history (#16).

with keys as (

    select customer_id, person_customer_id, person_customer_count
    from {{ ref('int_person_keys') }}

),

-- members of persons with more than one customer id: each customer-day as known at the end of run_date
shared_member_states as (

    {{ latest_customer_day_states(
        'customer_id in (select customer_id from keys where person_customer_count > 1)') }}

),

-- person-days: a guest order and the account's order on one day are one purchase day of the person
shared_person_states as (

    select
        customer_id,
        activity_date,
        sum(orders_count)                                                       as orders_count,
        sum(items_count)                                                        as items_count,
        sum(cancelled_orders_count)                                             as cancelled_orders_count,
        sum(gross_revenue_eur)                                                  as gross_revenue_eur,
        sum(returned_revenue_eur)                                               as returned_revenue_eur,
        sum(returns_count)                                                      as returns_count,
        {{ concat_lists('category_mix') }}                                             as category_mix
    from {{ by_person('shared_member_states') }}
    group by customer_id, activity_date

),

lifetime as (

    select
        totals.customer_id,
        {%- for column in order_total_columns() %}
        totals.{{ column }}{% if not loop.last %},{% endif %}
        {%- endfor %}
    from {{ ref('fs_customer_order_totals') }} as totals
    left join keys on keys.customer_id = totals.customer_id
    where totals.has_orders and coalesce(keys.person_customer_count, 1) = 1
    union all
    {{ order_lifetime_totals('shared_person_states') }}

),

-- the windows: states of the last 90 days, summed per person
windows as (

    select
        customer_id,
        {%- for days in [7, 30, 90] %}
        sum(orders_count) filter (where activity_date > {{ run_date() }} - {{ days }})
                                                                                as orders_{{ days }}d,
        sum(gross_revenue_eur - returned_revenue_eur) filter (where activity_date > {{ run_date() }} - {{ days }})
                                                                                as net_revenue_eur_{{ days }}d
        {%- if not loop.last %},{% endif %}
        {%- endfor %}
    from {{ by_person('(' ~ latest_customer_day_states('activity_date > ' ~ run_date() ~ ' - 90') ~ ')') }}
    group by customer_id

)

select
    lifetime.customer_id,
    {{ run_date() }}                                                            as as_of_date,
    lifetime.first_order_date,
    lifetime.last_order_date,
    {{ days_between('lifetime.first_order_date', run_date()) }}            as days_since_first_order,
    {{ days_between('lifetime.last_order_date', run_date()) }}             as days_since_last_order,
    lifetime.orders_count,
    lifetime.purchase_days,
    lifetime.items_count,
    lifetime.cancelled_orders_count,
    lifetime.gross_revenue_eur,
    lifetime.returned_revenue_eur,
    lifetime.gross_revenue_eur - lifetime.returned_revenue_eur                  as net_revenue_eur,
    lifetime.orders_with_return_count,
    {%- for days in [7, 30, 90] %}
    coalesce(windows.orders_{{ days }}d, 0)                                     as orders_{{ days }}d,
    coalesce(windows.net_revenue_eur_{{ days }}d, 0)                            as net_revenue_eur_{{ days }}d,
    {%- endfor %}
    greatest(lifetime.purchase_days - 1, 0)                                     as bgnbd_frequency,
    {{ days_between('lifetime.first_order_date', 'lifetime.last_order_date') }} as bgnbd_recency_days,
    {{ days_between('lifetime.first_order_date', run_date()) }}            as bgnbd_t_days,
    {{ fdiv('lifetime.gross_revenue_eur - lifetime.first_purchase_day_gross_eur', 'nullif(lifetime.purchase_days - 1, 0)') }}
                                                                                as bgnbd_monetary_eur,
    lifetime.favourite_category,
    lifetime.favourite_category_share,
    lifetime.distinct_categories
from lifetime
left join windows on windows.customer_id = lifetime.customer_id
