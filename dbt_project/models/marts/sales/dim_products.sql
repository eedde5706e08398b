-- One row per product: the current product version, plus products that appear only in transactions
-- (no product master data: category 'unknown'), with lifetime sales.

with products as (

    select * from {{ ref('stg_shop__products') }}
    where is_latest

),

sales as (

    select
        product_id,
        min(order_date) filter (where line_type = 'sale')                                          as first_sold_date,
        max(order_date) filter (where line_type = 'sale')                                          as last_sold_date,
        count(distinct order_id) filter (where line_type = 'sale' and status = 'completed')        as orders_count,
        coalesce(sum(coalesce(quantity, 1)) filter (where line_type = 'sale' and status = 'completed'), 0)
                                                                                                   as units_sold,
        coalesce(sum(abs(coalesce(quantity, 1))) filter (where line_type = 'return' and status = 'completed'), 0)
                                                                                                   as units_returned,
        coalesce(sum(amount_eur) filter (where status = 'completed'), 0)                           as net_revenue_eur
    from {{ ref('int_order_lines') }}
    where product_id is not null
    group by product_id

),

all_products as (

    select product_id from products
    union
    select product_id from sales

)

select
    all_products.product_id::string                                    as product_id,
    products.product_name::string                                      as product_name,
    coalesce(products.category, 'unknown')::string                     as category,
    products.subcategory::string                                       as subcategory,
    products.brand::string                                             as brand,
    products.price::decimal(18, 4)                                      as list_price,
    products.currency::string                                          as list_price_currency,
    cast({{ to_base_currency('products.price', 'products.currency') }} as decimal(18, 2)) as list_price_eur,
    (products.product_id is not null)::boolean                          as has_master_data,
    sales.first_sold_date::date                                         as first_sold_date,
    sales.last_sold_date::date                                          as last_sold_date,
    coalesce(sales.orders_count, 0)::integer                            as orders_count,
    coalesce(sales.units_sold, 0)::integer                              as units_sold,
    coalesce(sales.units_returned, 0)::integer                          as units_returned,
    (coalesce(sales.units_returned, 0) / nullif(sales.units_sold, 0))::double as unit_return_rate,
    coalesce(sales.net_revenue_eur, 0)::decimal(18, 2)                  as net_revenue_eur
from all_products
left join products on products.product_id = all_products.product_id
left join sales    on sales.product_id = all_products.product_id
{{ fx_asof_join('products', 'currency', none,
                 date_expr='coalesce(' ~ utc_date('products.updated_at') ~ ', products.landed_date)') }}
