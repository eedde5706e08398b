-- Every order's net revenue in fct_orders equals the sum of its completed lines (sales minus returns) in
-- int_order_lines, to the cent. Returns the orders that disagree.

with lines as (

    select order_id, sum(amount_eur) filter (where status = 'completed') as net_from_lines
    from {{ ref('int_order_lines') }}
    group by order_id

)

select orders.order_id, orders.net_revenue_eur, lines.net_from_lines
from {{ ref('fct_orders') }} as orders
inner join lines on lines.order_id = orders.order_id
where abs(orders.net_revenue_eur - coalesce(lines.net_from_lines, 0)) > 0.01
