{{
    config(
        materialized='incremental',
        partition_by=date_partition('as_of_date'),
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

select
    recommendations.as_of_date::date                                    as as_of_date,
    recommendations.customer_id::string                                as customer_id,
    recommendations.rank::integer                                       as rank,
    recommendations.product_id::string                                 as product_id,
    recommendations.score::double                                       as score,
    recommendations.source::string                                     as source,
    recommendations.recommender_model_version::string                  as recommender_model_version,
    recommendations.run_id::string                                     as run_id,
    recommendations.loaded_at::{{ type_timestamptz() }}                              as loaded_at
from recommendations
{% if is_incremental() -%}
where recommendations.as_of_date in ({{ scored_dates_to_build('recommendations') }})
{%- endif %}
