{#
  RFM segment from the recency and frequency scores (1-5), the usual R x F grid. Customers without an order
  (null scores) are 'no_orders'. docs/feature_store.md lists the names.
#}
{% macro rfm_segment(r, f) -%}
    case
        when {{ r }} is null or {{ f }} is null      then 'no_orders'
        when {{ r }} >= 4 and {{ f }} >= 4           then 'champions'
        when {{ r }} >= 3 and {{ f }} >= 3           then 'loyal_customers'
        when {{ r }} >= 4 and {{ f }} = 2            then 'potential_loyalists'
        when {{ r }} >= 4                            then 'new_customers'
        when {{ r }} = 3 and {{ f }} = 2             then 'need_attention'
        when {{ r }} = 3                             then 'promising'
        when {{ r }} = 1 and {{ f }} >= 4            then 'cant_lose_them'
        when {{ f }} >= 3                            then 'at_risk'
        when {{ r }} = 2                             then 'hibernating'
        else 'lost'
    end
{%- endmacro %}
