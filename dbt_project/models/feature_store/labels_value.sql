{{
    config(
        materialized='incremental',
        partition_by=date_partition('as_of_date'),
        incremental_strategy='delete+insert',
        unique_key='as_of_date',
        on_schema_change='fail'
    )
}}
-- Future-value label per snapshot row (a person, customer_id = its primary member) and as_of_date whose horizon
-- (var value_horizon_days, H) is fully observed by run_date. Every customer id of the person counts.
-- future_net_revenue_eur = net revenue (EUR) of completed orders placed in the H days after as_of_date, minus the
-- returns of those orders received within the horizon.

{%- set horizon = int_var('value_horizon_days') %}

with snapshots as (

    select distinct as_of_date
    from {{ ref('customer_features') }}
    where as_of_date + {{ horizon }} <= {{ run_date() }}
    {% if is_incremental() -%}
      and (
        as_of_date + {{ horizon }} >= {{ lookback_start(catch_up=false) }}
        or as_of_date not in (select distinct as_of_date from {{ this }})
      )
    {%- endif %}

),

population as (

    select features.customer_id, features.as_of_date
    from {{ ref('customer_features') }} as features
    semi join snapshots on snapshots.as_of_date = features.as_of_date

),

-- sale lines count when placed in the horizon; their returns when received before it ends (amounts are negative)
future_lines as (

    select population.customer_id, population.as_of_date, lines.amount_eur
    from population
    inner join {{ by_person(ref('int_order_lines')) }} as lines  -- every customer id of the person
        on  lines.customer_id = population.customer_id
        and lines.order_date between population.as_of_date + 1 and population.as_of_date + {{ horizon }}
        and lines.status = 'completed'
        and (lines.line_type = 'sale' or lines.activity_date <= population.as_of_date + {{ horizon }})

),

future_value as (

    select customer_id, as_of_date, sum(amount_eur) as net_revenue_eur
    from future_lines
    group by customer_id, as_of_date

)

select
    population.customer_id::string                                   as customer_id,
    population.as_of_date::date                                       as as_of_date,
    {{ horizon }}::integer                                            as value_horizon_days,
    coalesce(future_value.net_revenue_eur, 0)::decimal(18, 2)         as future_net_revenue_eur
from population
left join future_value
    on  future_value.customer_id = population.customer_id
    and future_value.as_of_date = population.as_of_date
