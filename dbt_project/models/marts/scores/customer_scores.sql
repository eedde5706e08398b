{{
    config(
        materialized='incremental',
        partition_by=date_partition('as_of_date'),
        incremental_strategy='replace_dates',
        date_column='as_of_date',
        on_schema_change='append_new_columns'
    )
}}
-- One row per as_of_date and customer: the model scores of that date (churn, BG/NBD, value, the churn reasons) with
-- the versions of the models that produced them. The history of every scored date is kept.
-- append_new_columns: a warehouse built before a column existed (the churn reasons) gains it, null on the dates
-- already built, instead of failing the nightly; rebuilding those dates (or --full-refresh) fills it from raw.scores.
--
-- Incremental per date: a run replaces its run_date (so a rerun after re-scoring, or after the date's scores were
-- withdrawn, gives exactly what raw.scores holds now) and every date whose rows were (re)published since the last run
-- (a backfill scored later). Dates are compared by their latest load time.

with scores as (

    select * from {{ ref('stg_scores__customer_scores') }}

)

select
    scores.as_of_date::date                                             as as_of_date,
    scores.customer_id::string                                         as customer_id,
    scores.churn_probability::double                                    as churn_probability,
    scores.churn_decile::integer                                        as churn_decile,
    scores.p_alive::double                                              as p_alive,
    scores.expected_purchases::double                                   as expected_purchases,
    scores.predicted_value_eur::double                                  as predicted_value_eur,
    scores.value_decile::integer                                        as value_decile,
    scores.churn_reason_1::string                                      as churn_reason_1,
    scores.churn_reason_2::string                                      as churn_reason_2,
    scores.churn_reason_3::string                                      as churn_reason_3,
    scores.churn_model_version::string                                 as churn_model_version,
    scores.clv_model_version::string                                   as clv_model_version,
    scores.recommender_model_version::string                           as recommender_model_version,
    scores.feature_snapshot_date::date                                  as feature_snapshot_date,
    scores.run_id::string                                              as run_id,
    scores.scored_at::{{ type_timestamptz() }}                                       as scored_at,
    scores.loaded_at::{{ type_timestamptz() }}                                       as loaded_at
from scores
{% if is_incremental() -%}
where scores.as_of_date in ({{ scored_dates_to_build('scores') }})
{%- endif %}
