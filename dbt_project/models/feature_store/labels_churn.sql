{{
    config(
        materialized='incremental',
        partition_by=date_partition('as_of_date'),
        incremental_strategy='delete+insert',
        unique_key='as_of_date',
        on_schema_change='fail'
    )
}}
-- Churn label per snapshot row: one row per person (customer_id = its primary member) and as_of_date whose horizon (var churn_horizon_days, H)
-- is fully observed by run_date (as_of_date + H <= run_date). churned = no completed order placed in the H days
-- after as_of_date. Labels whose horizon closed within the lookback are recomputed (late orders).

{%- set horizon = int_var('churn_horizon_days') %}

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

purchase_days as (

    -- every customer id of the person counts (int_person_keys): the account's purchases after a guest checkout
    select distinct customer_id, order_date
    from {{ by_person(ref('int_order_lines')) }}
    where line_type = 'sale' and status = 'completed'

),

future_purchases as (

    select population.customer_id, population.as_of_date, count(*) as purchase_days
    from population
    inner join purchase_days
        on  purchase_days.customer_id = population.customer_id
        and purchase_days.order_date between population.as_of_date + 1 and population.as_of_date + {{ horizon }}
    group by population.customer_id, population.as_of_date

)

select
    population.customer_id::string                                   as customer_id,
    population.as_of_date::date                                       as as_of_date,
    {{ horizon }}::integer                                            as churn_horizon_days,
    (future_purchases.purchase_days is null)::boolean                 as churned
from population
left join future_purchases
    on  future_purchases.customer_id = population.customer_id
    and future_purchases.as_of_date = population.as_of_date
