-- Working table for the run's snapshot: one row per person (customer_id = its primary member, int_person_keys)
-- with an order, cancellation or return known at the end of run_date, with their order features as of then, over
-- every customer id of the person. Reads only the compact customer-day states.

with member_states as (

    -- each customer-day as it was known at the end of run_date
    select *
    from {{ ref('int_customer_daily_orders') }}
    where known_date <= {{ run_date() }}
    qualify row_number() over (partition by customer_id, activity_date order by known_date desc) = 1

),

states as (

    -- person-days: a guest order and the account's order on one day are one purchase day of the person
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
    from {{ by_person('member_states') }}
    group by customer_id, activity_date

),

totals as (

    select
        customer_id,
        min(activity_date) filter (where orders_count > 0)                      as first_order_date,
        max(activity_date) filter (where orders_count > 0)                      as last_order_date,
        sum(orders_count)                                                       as orders_count,
        count(*) filter (where orders_count > 0)                                as purchase_days,
        sum(items_count)                                                        as items_count,
        sum(cancelled_orders_count)                                             as cancelled_orders_count,
        sum(gross_revenue_eur)                                                  as gross_revenue_eur,
        sum(returned_revenue_eur)                                               as returned_revenue_eur,
        sum(returns_count)                                                      as orders_with_return_count,
        -- BG/NBD works per purchase day; the first day's spend is left out of the repeat-spend mean
        {{ first_by('gross_revenue_eur', 'activity_date', filter='orders_count > 0') }}
                                                                                as first_purchase_day_gross_eur,
        {%- for days in [7, 30, 90] %}
        sum(orders_count) filter (where activity_date > {{ run_date() }} - {{ days }})
                                                                                as orders_{{ days }}d,
        sum(gross_revenue_eur - returned_revenue_eur) filter (where activity_date > {{ run_date() }} - {{ days }})
                                                                                as net_revenue_eur_{{ days }}d
        {%- if not loop.last %},{% endif %}
        {%- endfor %}
    from states
    group by customer_id

),

categories as (

    select customer_id, mix.category, sum(mix.gross_revenue_eur) as gross_revenue_eur
    from (select customer_id, {{ unnest_list('category_mix') }} as mix from states)
    group by customer_id, mix.category

),

category_affinity as (

    select
        customer_id,
        {{ first_by('category', 'gross_revenue_eur desc, category') }}              as favourite_category,
        {{ fdiv('max(gross_revenue_eur)', 'nullif(sum(gross_revenue_eur), 0)') }}              as favourite_category_share,
        count(*)                                                                as distinct_categories
    from categories
    group by customer_id

)

select
    totals.customer_id,
    {{ run_date() }}                                                            as as_of_date,
    totals.first_order_date,
    totals.last_order_date,
    {{ days_between('totals.first_order_date', run_date()) }}            as days_since_first_order,
    {{ days_between('totals.last_order_date', run_date()) }}             as days_since_last_order,
    totals.orders_count,
    totals.purchase_days,
    totals.items_count,
    totals.cancelled_orders_count,
    totals.gross_revenue_eur,
    totals.returned_revenue_eur,
    totals.gross_revenue_eur - totals.returned_revenue_eur                      as net_revenue_eur,
    totals.orders_with_return_count,
    {%- for days in [7, 30, 90] %}
    coalesce(totals.orders_{{ days }}d, 0)                                      as orders_{{ days }}d,
    coalesce(totals.net_revenue_eur_{{ days }}d, 0)                             as net_revenue_eur_{{ days }}d,
    {%- endfor %}
    greatest(totals.purchase_days - 1, 0)                                       as bgnbd_frequency,
    {{ days_between('totals.first_order_date', 'totals.last_order_date') }} as bgnbd_recency_days,
    {{ days_between('totals.first_order_date', run_date()) }}            as bgnbd_t_days,
    {{ fdiv('totals.gross_revenue_eur - totals.first_purchase_day_gross_eur', 'nullif(totals.purchase_days - 1, 0)') }}
                                                                                as bgnbd_monetary_eur,
    category_affinity.favourite_category,
    category_affinity.favourite_category_share,
    coalesce(category_affinity.distinct_categories, 0)                          as distinct_categories
from totals
left join category_affinity on category_affinity.customer_id = totals.customer_id
