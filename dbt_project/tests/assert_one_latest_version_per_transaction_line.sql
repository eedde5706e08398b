-- depends_on: {{ ref('stg_shop__transactions') }}
-- Every transaction line (line_key) has exactly one latest version (is_latest) in stg_shop__transactions.
-- A night checks the lines of the orders with a version landed in its test window (test_window_start(),
-- macros/tests/get_where_subquery.sql), ranking only their versions (the view ranks every version ever landed;
-- the other lines' ranking cannot have changed since their own night). A first build or --full-refresh checks all.
{%- set start = test_window_start() %}
{%- if start is none %}
    {%- set orders = none %}
{%- else %}
    {%- set orders -%}
        order_id in (
            select order_id from {{ source('shop', 'transactions') }}
            where _dt between {{ date_literal(start) }} and {{ run_date() }}
        )
    {%- endset %}
{%- endif %}

with versions as (

    {{ transaction_versions(where=orders) }}

)

select line_key, count(*) filter (where is_latest) as latest_versions
from versions
group by line_key
having count(*) filter (where is_latest) <> 1
