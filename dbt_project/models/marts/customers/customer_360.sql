-- One row per person: the analyst's view of a customer, as of the latest feature snapshot (the last run_date).
-- Person grain (docs/identity.md): customer_id is the person's primary member (the CRM's id, its account if it has
-- one), person_id the stable person id, and orders, revenue, tracking and likes sum every customer id of the person
-- (guest checkouts, duplicate accounts); consent is the most restrictive among them, profile columns the primary
-- member's. Without duplicates a person is one customer, the same row as a customer grain gives.
-- Profile and consent, orders and value after returns (EUR), RFM scores and segment, favourite category,
-- web behaviour (sessions, views, carts, devices, channels), likes vs buys (viewed or carted versus bought), and
-- the customer's latest model scores (scored on or before the snapshot date; null when never scored). No personal
-- data: join pii.pii_customer_contacts on customer_id where contact details are needed and allowed.

with latest_snapshot as (

    select *
    from {{ ref('customer_features') }}
    where as_of_date = (select max(as_of_date) from {{ ref('customer_features') }})

),

-- each customer's most recent scores up to the snapshot date
latest_scores as (

    select
        customer_id,
        max_by(
            {{ struct_of(['as_of_date', 'churn_probability', 'churn_decile', 'p_alive', 'expected_purchases',
                          'predicted_value_eur', 'value_decile', 'churn_model_version', 'clv_model_version',
                          'recommender_model_version']) }},
            as_of_date
        )                                                   as s
    from {{ ref('customer_scores') }}
    where as_of_date <= (select max(as_of_date) from {{ ref('customer_features') }})
    group by customer_id

)

select
    f.customer_id::string                                  as customer_id,
    f.person_id::string                                    as person_id,
    f.customer_id_count::integer                            as customer_id_count,
    f.as_of_date::date                                      as as_of_date,
    f.has_profile::boolean                                  as has_profile,
    c.signup_date::date                                     as signup_date,
    c.country::string                                      as country,
    c.acquisition_channel::string                          as acquisition_channel,
    f.marketing_consent::boolean                            as marketing_consent,
    c.consent_updated_at::{{ type_timestamptz() }}                       as consent_updated_at,
    f.tenure_days::integer                                  as tenure_days,
    f.first_order_date::date                                as first_order_date,
    f.last_order_date::date                                 as last_order_date,
    f.orders_count::integer                                 as orders_count,
    f.cancelled_orders_count::integer                       as cancelled_orders_count,
    f.items_count::integer                                  as items_count,
    f.gross_revenue_eur::decimal(18, 2)                     as gross_revenue_eur,
    f.returned_revenue_eur::decimal(18, 2)                  as returned_revenue_eur,
    f.net_revenue_eur::decimal(18, 2)                       as net_revenue_eur,
    f.avg_order_value_eur::decimal(18, 2)                   as avg_order_value_eur,
    f.return_rate::double                                   as return_rate,
    f.days_since_last_order::integer                        as recency_days,
    f.orders_count::integer                                 as frequency,
    f.net_revenue_eur::decimal(18, 2)                       as monetary_eur,
    f.rfm_recency_score::integer                            as rfm_recency_score,
    f.rfm_frequency_score::integer                          as rfm_frequency_score,
    f.rfm_monetary_score::integer                           as rfm_monetary_score,
    f.rfm_segment::string                                  as rfm_segment,
    f.favourite_category::string                           as favourite_category,
    f.days_since_last_visit::integer                        as days_since_last_visit,
    f.sessions_7d::integer                                  as sessions_7d,
    f.sessions_30d::integer                                 as sessions_30d,
    f.sessions_90d::integer                                 as sessions_90d,
    f.product_views_7d::integer                             as product_views_7d,
    f.product_views_30d::integer                            as product_views_30d,
    f.product_views_90d::integer                            as product_views_90d,
    f.cart_adds_7d::integer                                 as cart_adds_7d,
    f.cart_adds_30d::integer                                as cart_adds_30d,
    f.cart_adds_90d::integer                                as cart_adds_90d,
    f.abandoned_carts_90d::integer                          as abandoned_carts_90d,
    f.cart_abandonment_rate_90d::double                     as cart_abandonment_rate_90d,
    f.share_sessions_desktop_90d::double                    as share_sessions_desktop_90d,
    f.share_sessions_mobile_90d::double                     as share_sessions_mobile_90d,
    f.share_sessions_tablet_90d::double                     as share_sessions_tablet_90d,
    f.first_touch_channel::string                          as first_touch_channel,
    f.last_touch_channel::string                           as last_touch_channel,
    f.top_viewed_category_90d::string                      as top_viewed_category_90d,
    f.top_viewed_category_share_90d::double                 as top_viewed_category_share_90d,
    f.top_bought_category::string                          as top_bought_category,
    f.top_viewed_category_bought::boolean                   as top_viewed_category_bought,
    f.viewed_categories_90d::integer                        as viewed_categories_90d,
    f.bought_categories::integer                            as bought_categories,
    f.viewed_products_30d::integer                          as viewed_products_30d,
    f.viewed_not_bought_products_30d::integer               as viewed_not_bought_products_30d,
    f.cart_abandon_products_30d::integer                    as cart_abandon_products_30d,
    f.last_cart_abandon_product_30d::string                as last_cart_abandon_product_30d,
    f.view_to_buy_rate_90d::double                          as view_to_buy_rate_90d,
    scores.s.churn_probability::double                      as churn_probability,
    scores.s.churn_decile::integer                          as churn_decile,
    scores.s.p_alive::double                                as p_alive,
    scores.s.expected_purchases::double                     as expected_purchases,
    scores.s.predicted_value_eur::double                    as predicted_value_eur,
    scores.s.value_decile::integer                          as value_decile,
    scores.s.churn_model_version::string                   as churn_model_version,
    scores.s.clv_model_version::string                     as clv_model_version,
    scores.s.recommender_model_version::string             as recommender_model_version,
    scores.s.as_of_date::date                               as scored_as_of
from latest_snapshot as f
left join {{ ref('dim_customers') }} as c on c.customer_id = f.customer_id
left join latest_scores as scores on scores.customer_id = f.customer_id
