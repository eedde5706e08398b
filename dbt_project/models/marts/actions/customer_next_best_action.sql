{{
    config(
        materialized='incremental',
        partition_by=date_partition('as_of_date'),
        incremental_strategy='replace_dates',
        date_column='as_of_date',
        on_schema_change='fail'
    )
}}
-- One row per customer scored on run_date: the one marketing action to take (retain, win_back, upsell, cross_sell,
-- nurture) or none, with the product to offer, its expected value and the reason in words. Rules and settings:
-- docs/next_best_action.md; every threshold is a dbt var backed by a setting of c360/config.py.
--
-- Steps: each rule that applies proposes its action with an expected value (uplift x value at stake); the highest
-- expected value wins (ties: retain, win_back, upsell, cross_sell, nurture); then, in this order, no marketing
-- consent as of the date, an action given within the contact cap, no rule, or a value below the minimum turn the
-- winner into 'none' (the winner stays visible in best_candidate_action, the reason says which rule stopped it).
--
-- Incremental per date: a run replaces its run_date only. The contact cap reads the actions of earlier dates from
-- this table, so the history is kept (no full refresh) and a date is decided after the dates before it.
{%- set cap_days = int_var('nba_contact_cap_days') %}
{%- set win_back_days = int_var('nba_win_back_after_days') %}
{%- set nurture_max_orders = int_var('nba_nurture_max_orders') %}
{%- set retain_min_churn = float_var('nba_retain_min_churn') %}
{%- set retain_min_value = float_var('nba_retain_min_value_eur') %}
{%- set cross_sell_max_churn = float_var('nba_cross_sell_max_churn') %}
{%- set min_value = float_var('nba_min_expected_value_eur') %}
{%- set uplift = {
    'retain': float_var('nba_uplift_retain'),
    'win_back': float_var('nba_uplift_win_back'),
    'upsell': float_var('nba_uplift_upsell'),
    'cross_sell': float_var('nba_uplift_cross_sell'),
    'nurture': float_var('nba_uplift_nurture'),
} %}

with scored as (

    select * from {{ ref('customer_scores') }}
    where as_of_date = {{ run_date() }}

),

-- the scores with the feature snapshot they were computed from (consent, recency, orders, likes vs buys)
customers as (

    select
        scored.as_of_date,
        scored.customer_id,
        scored.churn_probability,
        scored.predicted_value_eur,
        scored.run_id,
        scored.churn_model_version,
        scored.clv_model_version,
        scored.recommender_model_version,
        scored.churn_reason_1,
        scored.churn_reason_2,
        scored.churn_reason_3,
        coalesce(scored.feature_snapshot_date, scored.as_of_date)            as feature_snapshot_date,
        coalesce(features.marketing_consent, false)                          as marketing_consent,
        coalesce(features.orders_count, 0)                                    as orders_count,
        features.days_since_last_order,
        coalesce(features.avg_order_value_eur, 0)::double                     as avg_order_value_eur,
        features.top_viewed_category_90d,
        features.top_bought_category,
        features.top_viewed_category_bought,
        coalesce(features.viewed_not_bought_products_30d, 0)                  as viewed_not_bought_products_30d
    from scored
    left join {{ ref('customer_features') }} as features
        on  features.customer_id = scored.customer_id
        and features.as_of_date = coalesce(scored.feature_snapshot_date, scored.as_of_date)

),

-- the date's top three recommendations (none on a transactions-only night) with their current category
recommended as (

    select recs.customer_id, recs.rank, recs.product_id, products.category
    from {{ ref('customer_recommendations') }} as recs
    left join {{ ref('dim_products') }} as products on products.product_id = recs.product_id
    where recs.as_of_date = {{ run_date() }}
    qualify row_number() over (partition by recs.customer_id order by recs.rank, recs.product_id) <= 3

),

-- the product to offer: the best-ranked of the three in the category the customer looks at most, else the best
offer as (

    select
        recommended.customer_id,
        recommended.product_id,
        recommended.category,
        coalesce(recommended.category = customers.top_viewed_category_90d, false)   as in_top_viewed,
        coalesce(recommended.category = customers.top_bought_category, false)       as in_top_bought
    from recommended
    inner join customers on customers.customer_id = recommended.customer_id
    qualify row_number() over (
        partition by recommended.customer_id
        order by coalesce(recommended.category = customers.top_viewed_category_90d, false) desc,
                 recommended.rank, recommended.product_id
    ) = 1

),

-- every action a rule proposes, with its expected value (EUR) and why, in words
candidates as (

    select
        customer_id,
        'retain'                                                              as action,
        1                                                                     as priority,
        cast(null as string)                                                 as product_id,
        {{ uplift['retain'] }} * churn_probability * predicted_value_eur      as expected_value_eur,
        -- every %f argument cast to double: Spark's printf (format_string) fails on a decimal (a decimal column,
        -- or a literal such as 50.0), DuckDB's formats either
        printf('churn risk %.0f%% (retain from %.0f%%) and a predicted value of %.2f EUR (from %.2f)',
               cast(100 * churn_probability as double), cast({{ 100 * retain_min_churn }} as double),
               cast(predicted_value_eur as double), cast({{ retain_min_value }} as double))
            -- what the churn model says drives this customer's risk (customer_scores.churn_reason_1..3), when known
            || case when churn_reason_1 is not null
                    then '; driven by ' || concat_ws(', ', churn_reason_1, churn_reason_2, churn_reason_3)
                    else '' end
                                                                              as reason
    from customers
    where orders_count > 0
      and days_since_last_order < {{ win_back_days }}
      and churn_probability >= {{ retain_min_churn }}
      and predicted_value_eur >= {{ retain_min_value }}

    union all

    select
        customer_id,
        'win_back',
        2,
        null,
        {{ uplift['win_back'] }} * avg_order_value_eur,
        printf('no order for %d days (win-back from %d days), average order %.2f EUR',
               days_since_last_order, {{ win_back_days }}, cast(avg_order_value_eur as double))
    from customers
    where orders_count > 0
      and days_since_last_order >= {{ win_back_days }}

    union all

    select
        customers.customer_id,
        case when offer.in_top_bought then 'upsell' else 'cross_sell' end,
        case when offer.in_top_bought then 3 else 4 end,
        offer.product_id,
        (case when offer.in_top_bought then {{ uplift['upsell'] }} else {{ uplift['cross_sell'] }} end)
            * (1 - customers.churn_probability) * customers.avg_order_value_eur,
        'recommended product ' || offer.product_id || ' in ' || coalesce(offer.category, 'an unknown category')
            || case
                when offer.in_top_bought then ', the category they buy most'
                when offer.in_top_viewed and not coalesce(customers.top_viewed_category_bought, false)
                    then ', the category they view most but have not bought'
                when offer.in_top_viewed then ', the category they view most'
                else ', new to them'
               end
            || printf(', churn risk %.0f%%', cast(100 * customers.churn_probability as double))
    from customers
    inner join offer on offer.customer_id = customers.customer_id
    where customers.orders_count > 0
      and customers.days_since_last_order < {{ win_back_days }}
      and customers.churn_probability <= {{ cross_sell_max_churn }}

    union all

    select
        customer_id,
        'nurture',
        5,
        null,
        {{ uplift['nurture'] }} * greatest(coalesce(predicted_value_eur, 0), avg_order_value_eur),
        printf('%d order(s) so far (nurture up to %d)', orders_count, {{ nurture_max_orders }})
            || case when viewed_not_bought_products_30d > 0
                    then printf(', %d product(s) viewed but not bought in 30 days', viewed_not_bought_products_30d)
                    else '' end
    from customers
    where orders_count <= {{ nurture_max_orders }}
      and coalesce(days_since_last_order, 0) < {{ win_back_days }}

),

best as (

    select *
    from candidates
    qualify row_number() over (partition by customer_id order by expected_value_eur desc nulls last, priority) = 1

),

-- each customer's latest action inside the cap window before run_date (a 'none' is no contact); only the window is
-- read, so the nightly cost stays flat however many nights the table holds
previous_actions as (

    {% if is_incremental() -%}
    select customer_id, max(as_of_date) as last_action_date, max_by(action, as_of_date) as last_action
    from {{ this }}
    where as_of_date < {{ run_date() }}
      and as_of_date > {{ run_date() }} - {{ cap_days }}
      and action <> 'none'
    group by customer_id
    {%- else -%}
    select cast(null as string) as customer_id, cast(null as date) as last_action_date,
           cast(null as string) as last_action
    where false
    {%- endif %}

),

decided as (

    select
        customers.*,
        best.action                                                           as candidate_action,
        best.product_id                                                       as candidate_product_id,
        best.expected_value_eur                                               as candidate_value_eur,
        best.reason                                                           as candidate_reason,
        previous_actions.last_action_date,
        previous_actions.last_action,
        case
            when not customers.marketing_consent then 'no_consent'
            when previous_actions.last_action_date is not null then 'contact_cap'
            when best.action is null then 'no_rule'
            when coalesce(best.expected_value_eur, 0) < {{ min_value }} then 'below_min_value'
        end                                                                   as suppressed_by
    from customers
    left join best on best.customer_id = customers.customer_id
    left join previous_actions on previous_actions.customer_id = customers.customer_id

)

select
    as_of_date::date                                                          as as_of_date,
    customer_id::string                                                      as customer_id,
    (case when suppressed_by is null then candidate_action else 'none' end)::string as action,
    (case when suppressed_by is null then candidate_product_id end)::string  as product_id,
    (case when suppressed_by is null then round(candidate_value_eur, 2) end)::double as expected_value_eur,
    (case suppressed_by
        when 'no_consent' then 'no marketing consent as of ' || as_of_date::string
        when 'contact_cap' then printf('contacted on %s (%s): at most one action every %d days, next from %s',
                                       last_action_date::string, last_action, {{ cap_days }},
                                       (last_action_date + {{ cap_days }})::string)
        when 'no_rule' then 'no rule applies (not at risk, not lapsed, no recommendation to offer, not new)'
        when 'below_min_value' then printf('%s is worth %.2f EUR, below the minimum of %.2f EUR',
                                           candidate_action, cast(coalesce(candidate_value_eur, 0) as double),
                                           cast({{ min_value }} as double))
        else candidate_action || ': ' || candidate_reason
    end)::string                                                             as reason,
    suppressed_by::string                                                    as suppressed_by,
    candidate_action::string                                                 as best_candidate_action,
    round(candidate_value_eur, 2)::double                                     as best_candidate_value_eur,
    marketing_consent::boolean                                                as marketing_consent,
    last_action_date::date                                                    as previous_action_date,
    churn_probability::double                                                 as churn_probability,
    predicted_value_eur::double                                               as predicted_value_eur,
    days_since_last_order::integer                                            as days_since_last_order,
    top_viewed_category_90d::string                                          as top_viewed_category_90d,
    top_bought_category::string                                              as top_bought_category,
    {{ cap_days }}::integer                                                   as contact_cap_days,
    run_id::string                                                           as run_id,
    churn_model_version::string                                              as churn_model_version,
    clv_model_version::string                                                as clv_model_version,
    recommender_model_version::string                                        as recommender_model_version,
    feature_snapshot_date::date                                               as feature_snapshot_date
from decided
