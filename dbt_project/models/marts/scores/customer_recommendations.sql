{{
    config(
        materialized='incremental',
        incremental_strategy='replace_dates',
        date_column='as_of_date',
        on_schema_change='fail'
    )
}}
-- One row per as_of_date, customer and rank: the products recommended to the customer on that date, rank 1 = best
-- (the exports' rec_1..rec_3 are ranks 1-3). The history of every date is kept.
--
-- Incremental per date, like customer_scores: the run_date and every date (re)loaded since the last run.

with recommendations as (

    select * from {{ ref('stg_scores__recommendations') }}

)

{% if is_incremental() -%}
, loaded as (

    select as_of_date, max(loaded_at) as loaded_at from recommendations group by as_of_date

),

built as (

    select as_of_date, max(loaded_at) as loaded_at from {{ this }} group by as_of_date

),

dates_to_build as (

    select loaded.as_of_date
    from loaded
    left join built on built.as_of_date = loaded.as_of_date
    where loaded.as_of_date = {{ run_date() }}
       or built.as_of_date is null
       or loaded.loaded_at is distinct from built.loaded_at

)
{%- endif %}

select
    recommendations.as_of_date::date                                    as as_of_date,
    recommendations.customer_id::varchar                                as customer_id,
    recommendations.rank::integer                                       as rank,
    recommendations.product_id::varchar                                 as product_id,
    recommendations.score::double                                       as score,
    recommendations.source::varchar                                     as source,
    recommendations.recommender_model_version::varchar                  as recommender_model_version,
    recommendations.run_id::varchar                                     as run_id,
    recommendations.loaded_at::timestamptz                              as loaded_at
from recommendations
{% if is_incremental() -%}
semi join dates_to_build on dates_to_build.as_of_date = recommendations.as_of_date
{%- endif %}
