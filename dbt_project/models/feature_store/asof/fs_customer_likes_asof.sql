-- Working table for the run's snapshot: likes versus buys. One row per person (customer_id = its primary member,
-- int_person_keys) with a product interaction of one of its customer ids known at the end of run_date (feature_store.interactions: a product view, an add-to-cart or a completed purchase line),
-- comparing what they looked at with what they bought, per product and per category.
--
-- Point in time: interactions known by run_date and dated before run_date + 1 (the reading rule of interactions),
-- and each product's category in the product version known at run_date (a later re-categorisation does not move
-- a past snapshot). A shop without tracking has purchases only: the viewed/carted columns are zero or null then,
-- and without product data every category is null.
--
-- Every figure but the lifetime purchases per category reads the last 90 days of interactions; those come from the
-- running totals fs_customer_category_buys (per customer id, recomputed nightly only for the ids whose purchases
-- moved), summed per person here. So the night no longer groups every purchase line of the history (#16).

with interactions as (

    select
        customer_id,
        product_id,
        event_type,
        event_time,
        {{ utc_date('event_time') }}                                        as event_date
    from {{ by_person(ref('interactions')) }}
    where known_date <= {{ run_date() }}
      and event_time < {{ day_start_utc(run_date() ~ ' + 1') }}
      -- the last 90 days only: lifetime purchases come from fs_customer_category_buys (below). A customer whose
      -- only looks are older drops out of this table, which gives the same snapshot: customer_features reads
      -- zeros / nulls for them either way.
      and event_time >= {{ day_start_utc(run_date() ~ ' - 89') }}

),

products as (

    {{ products_known_at(run_date()) }}

),

typed as (

    select
        interactions.customer_id,
        interactions.product_id,
        products.category,
        interactions.event_time,
        interactions.event_date,
        -- "looked at": viewed or put in the cart; a cart add is the stronger like, both count as one look
        interactions.event_type in ('product_view', 'add_to_cart')          as is_look,
        interactions.event_type = 'add_to_cart'                             as is_cart,
        interactions.event_type = 'purchase'                                as is_buy
    from interactions
    left join products on products.product_id = interactions.product_id

),

per_product as (

    select
        customer_id,
        product_id,
        bool_or(is_look and event_date > {{ run_date() }} - 30)             as looked_30d,
        bool_or(is_cart and event_date > {{ run_date() }} - 30)             as carted_30d,
        bool_or(is_buy and event_date > {{ run_date() }} - 30)              as bought_30d,
        bool_or(is_look and event_date > {{ run_date() }} - 90)             as looked_90d,
        bool_or(is_buy and event_date > {{ run_date() }} - 90)              as bought_90d,
        max(event_time) filter (where is_cart and event_date > {{ run_date() }} - 30)
                                                                            as last_carted_at_30d
    from typed
    group by customer_id, product_id

),

product_summary as (

    select
        customer_id,
        count(*) filter (where looked_30d)                                  as viewed_products_30d,
        count(*) filter (where looked_30d and not bought_30d)               as viewed_not_bought_products_30d,
        count(*) filter (where carted_30d and not bought_30d)               as cart_abandon_products_30d,
        -- the most recently carted product left in the cart (ties by product_id, so reruns agree)
        {{ first_by('product_id', 'last_carted_at_30d desc, product_id', filter='carted_30d and not bought_30d') }}
                                                                            as last_cart_abandon_product_30d,
        count(*) filter (where looked_90d)                                  as viewed_products_90d,
        count(*) filter (where looked_90d and bought_90d)                   as viewed_and_bought_products_90d
    from per_product
    group by customer_id

),

-- looks of the last 90 days and lifetime purchase lines, per person and category (a category with neither has no row)
per_category as (

    select
        coalesce(looks.customer_id, buys.customer_id)                       as customer_id,
        coalesce(looks.category, buys.category)                             as category,
        coalesce(looks.looks_90d, 0)                                         as looks_90d,
        coalesce(buys.buys, 0)                                               as buys
    from (
        select customer_id, category, count(*) as looks_90d
        from typed
        where category is not null and is_look
        group by customer_id, category
    ) as looks
    full join (
        select customer_id, category, sum(buys) as buys
        from {{ by_person(ref('fs_customer_category_buys')) }}
        where buys > 0
        group by customer_id, category
    ) as buys
        on buys.customer_id = looks.customer_id and buys.category = looks.category

),

category_summary as (

    select
        customer_id,
        -- most looks in 90 days / most purchase lines ever; ties go to the alphabetically first category
        {{ first_by('category', 'looks_90d desc, category', filter='looks_90d > 0') }} as top_viewed_category_90d,
        max(looks_90d) / nullif(sum(looks_90d), 0)                          as top_viewed_category_share_90d,
        {{ first_by('category', 'buys desc, category', filter='buys > 0') }} as top_bought_category,
        count(*) filter (where looks_90d > 0)                               as viewed_categories_90d,
        count(*) filter (where buys > 0)                                    as bought_categories
    from per_category
    group by customer_id

)

select
    coalesce(product_summary.customer_id, category_summary.customer_id)    as customer_id,
    {{ run_date() }}                                                        as as_of_date,
    category_summary.top_viewed_category_90d,
    category_summary.top_viewed_category_share_90d,
    category_summary.top_bought_category,
    -- a like that is not (yet) a buy: the category they look at most has never been bought (null without looks)
    case when category_summary.top_viewed_category_90d is not null
        then coalesce(top_viewed.buys, 0) > 0 end                          as top_viewed_category_bought,
    coalesce(category_summary.viewed_categories_90d, 0)                    as viewed_categories_90d,
    coalesce(category_summary.bought_categories, 0)                        as bought_categories,
    coalesce(product_summary.viewed_products_30d, 0)                       as viewed_products_30d,
    coalesce(product_summary.viewed_not_bought_products_30d, 0)            as viewed_not_bought_products_30d,
    coalesce(product_summary.cart_abandon_products_30d, 0)                 as cart_abandon_products_30d,
    product_summary.last_cart_abandon_product_30d,
    product_summary.viewed_and_bought_products_90d / nullif(product_summary.viewed_products_90d, 0)
                                                                            as view_to_buy_rate_90d
-- a customer with an interaction in 90 days has a product row; one with older purchases only, a category row if a
-- bought product has a known category. A customer with neither has no row: customer_features reads the same zeros
-- and nulls for them as such a row would hold.
from product_summary
full join category_summary on category_summary.customer_id = product_summary.customer_id
left join per_category as top_viewed
    on  top_viewed.customer_id = category_summary.customer_id
    and top_viewed.category = category_summary.top_viewed_category_90d
