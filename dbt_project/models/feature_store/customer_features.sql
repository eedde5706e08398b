{{
    config(
        materialized='incremental',
        partition_by=date_partition('as_of_date'),
        incremental_strategy='delete+insert',
        unique_key='as_of_date',
        on_schema_change='append_new_columns'
    )
}}
-- The feature snapshot at the end of run_date: one row per person known then (a profile or a transaction of one of
-- its customer ids), keyed by customer_id = the person's primary member (its CRM id, int_person_keys) and person_id:
-- a guest checkout merged into an account counts in the account's row. Persons are the identity graph of the build
-- (docs/identity.md); without duplicates a person is one customer and nothing differs from a customer grain.
-- Each run adds (or, rerun, replaces) the snapshot of its run_date; earlier snapshots are never touched.
-- Point-in-time rule and column meanings: docs/feature_store.md.

with population as (

    select customer_id from {{ ref('fs_customer_profile_asof') }}
    union
    select customer_id from {{ ref('fs_customer_orders_asof') }}

),

joined as (

    select
        population.customer_id,
        profile.customer_id is not null                                   as has_profile,
        profile.signup_date,
        profile.country,
        profile.acquisition_channel,
        coalesce(profile.marketing_consent, false)                        as marketing_consent,
        orders.*  except (customer_id, as_of_date),
        tracking.* except (customer_id, as_of_date),
        likes.*    except (customer_id, as_of_date),
        persons.person_id,
        persons.person_customer_count
    from population
    left join {{ ref('fs_customer_profile_asof') }}  as profile  on profile.customer_id = population.customer_id
    left join {{ ref('fs_customer_orders_asof') }}   as orders   on orders.customer_id = population.customer_id
    left join {{ ref('fs_customer_tracking_asof') }} as tracking on tracking.customer_id = population.customer_id
    left join {{ ref('fs_customer_likes_asof') }}    as likes    on likes.customer_id = population.customer_id
    left join (
        select distinct person_customer_id, person_id, person_customer_count from {{ ref('int_person_keys') }}
    ) as persons on persons.person_customer_id = population.customer_id

),

-- RFM quintiles among the customers with a completed order; equal values always get the same score
scored as (

    select
        *,
        case when coalesce(orders_count, 0) > 0 then
            least(5, 1 + floor(5 * percent_rank() over (
                partition by coalesce(orders_count, 0) > 0 order by days_since_last_order desc)))
        end                                                               as rfm_recency_score,
        case when coalesce(orders_count, 0) > 0 then
            least(5, 1 + floor(5 * percent_rank() over (
                partition by coalesce(orders_count, 0) > 0 order by orders_count)))
        end                                                               as rfm_frequency_score,
        case when coalesce(orders_count, 0) > 0 then
            least(5, 1 + floor(5 * percent_rank() over (
                partition by coalesce(orders_count, 0) > 0 order by gross_revenue_eur - returned_revenue_eur)))
        end                                                               as rfm_monetary_score
    from joined

)

select
    customer_id::string                                                  as customer_id,
    {{ run_date() }}::date                                                as as_of_date,
    -- profile
    has_profile::boolean                                                  as has_profile,
    signup_date::date                                                     as signup_date,
    country::string                                                      as country,
    acquisition_channel::string                                          as acquisition_channel,
    marketing_consent::boolean                                            as marketing_consent,
    -- greatest() skips nulls: guard so an unknown start stays null instead of 0
    (case when coalesce(signup_date, first_order_date) is not null
        then greatest({{ days_between('coalesce(signup_date, first_order_date)', run_date()) }}, 0) end)::integer as tenure_days,
    -- orders, lifetime
    first_order_date::date                                                as first_order_date,
    last_order_date::date                                                 as last_order_date,
    days_since_first_order::integer                                       as days_since_first_order,
    days_since_last_order::integer                                        as days_since_last_order,
    coalesce(orders_count, 0)::integer                                    as orders_count,
    coalesce(purchase_days, 0)::integer                                   as purchase_days,
    coalesce(items_count, 0)::integer                                     as items_count,
    coalesce(cancelled_orders_count, 0)::integer                          as cancelled_orders_count,
    coalesce(gross_revenue_eur, 0)::decimal(18, 2)                        as gross_revenue_eur,
    coalesce(returned_revenue_eur, 0)::decimal(18, 2)                     as returned_revenue_eur,
    coalesce(net_revenue_eur, 0)::decimal(18, 2)                          as net_revenue_eur,
    ({{ fdiv('net_revenue_eur', 'nullif(orders_count, 0)') }})::decimal(18, 2)           as avg_order_value_eur,
    coalesce(orders_with_return_count, 0)::integer                        as orders_with_return_count,
    ({{ fdiv('returned_revenue_eur', 'nullif(gross_revenue_eur, 0)') }})::double         as return_rate,
    ({{ days_between('first_order_date', 'last_order_date') }} / nullif(purchase_days - 1, 0))::double as avg_days_between_orders,
    -- orders, windows
    coalesce(orders_7d, 0)::integer                                       as orders_7d,
    coalesce(orders_30d, 0)::integer                                      as orders_30d,
    coalesce(orders_90d, 0)::integer                                      as orders_90d,
    coalesce(net_revenue_eur_7d, 0)::decimal(18, 2)                       as net_revenue_eur_7d,
    coalesce(net_revenue_eur_30d, 0)::decimal(18, 2)                      as net_revenue_eur_30d,
    coalesce(net_revenue_eur_90d, 0)::decimal(18, 2)                      as net_revenue_eur_90d,
    -- RFM
    rfm_recency_score::integer                                            as rfm_recency_score,
    rfm_frequency_score::integer                                          as rfm_frequency_score,
    rfm_monetary_score::integer                                           as rfm_monetary_score,
    {{ rfm_segment('rfm_recency_score', 'rfm_frequency_score') }}::string as rfm_segment,
    -- category affinity
    favourite_category::string                                           as favourite_category,
    favourite_category_share::double                                      as favourite_category_share,
    coalesce(distinct_categories, 0)::integer                             as distinct_categories,
    -- BG/NBD and Gamma-Gamma inputs (per purchase day)
    coalesce(bgnbd_frequency, 0)::integer                                 as bgnbd_frequency,
    coalesce(bgnbd_recency_days, 0)::integer                              as bgnbd_recency_days,
    bgnbd_t_days::integer                                                 as bgnbd_t_days,
    bgnbd_monetary_eur::decimal(18, 2)                                    as bgnbd_monetary_eur,
    -- tracking (zero / null without tracking data)
    (coalesce(sessions_total, 0) > 0)::boolean                            as has_tracking,
    {%- for days in [7, 30, 90] %}
    coalesce(sessions_{{ days }}d, 0)::integer                            as sessions_{{ days }}d,
    coalesce(product_views_{{ days }}d, 0)::integer                       as product_views_{{ days }}d,
    coalesce(cart_adds_{{ days }}d, 0)::integer                           as cart_adds_{{ days }}d,
    {%- endfor %}
    coalesce(abandoned_carts_90d, 0)::integer                             as abandoned_carts_90d,
    (abandoned_carts_90d / nullif(cart_sessions_90d, 0))::double          as cart_abandonment_rate_90d,
    days_since_last_visit::integer                                        as days_since_last_visit,
    {%- for device in ['desktop', 'mobile', 'tablet'] %}
    ({{ device }}_sessions_90d / nullif(sessions_90d, 0))::double         as share_sessions_{{ device }}_90d,
    {%- endfor %}
    first_touch_channel::string                                          as first_touch_channel,
    last_touch_channel::string                                           as last_touch_channel,
    -- likes vs buys (viewed or carted versus bought; zero / null without tracking or product data)
    top_viewed_category_90d::string                                      as top_viewed_category_90d,
    top_viewed_category_share_90d::double                                 as top_viewed_category_share_90d,
    top_bought_category::string                                          as top_bought_category,
    top_viewed_category_bought::boolean                                   as top_viewed_category_bought,
    coalesce(viewed_categories_90d, 0)::integer                           as viewed_categories_90d,
    coalesce(bought_categories, 0)::integer                               as bought_categories,
    coalesce(viewed_products_30d, 0)::integer                             as viewed_products_30d,
    coalesce(viewed_not_bought_products_30d, 0)::integer                  as viewed_not_bought_products_30d,
    coalesce(cart_abandon_products_30d, 0)::integer                       as cart_abandon_products_30d,
    last_cart_abandon_product_30d::string                                as last_cart_abandon_product_30d,
    view_to_buy_rate_90d::double                                          as view_to_buy_rate_90d,
    -- the person (last, appended to older snapshots as null); an id the graph does not know is a person of one,
    -- with the id the graph would give it
    coalesce(person_id, 'p_' || substr({{ sha256_hex('customer_id') }}, 1, 24))::string as person_id,
    coalesce(person_customer_count, 1)::integer                           as customer_id_count
from scored
