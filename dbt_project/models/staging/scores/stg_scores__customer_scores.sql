-- One row per as_of_date and customer: the scores computed for that date, typed and renamed. The loader replaces a
-- date's rows, so there is normally one row per key already; should a date hold two (a loader bug, a manual
-- insert), the most recently loaded row wins.

select
    as_of_date::date                                                    as as_of_date,
    customer_id::string                                                as customer_id,
    run_id::string                                                     as run_id,
    churn_probability::double                                           as churn_probability,
    churn_decile::integer                                               as churn_decile,
    p_alive::double                                                     as p_alive,
    expected_purchases::double                                          as expected_purchases,
    predicted_value_eur::double                                         as predicted_value_eur,
    value_decile::integer                                               as value_decile,
    churn_model_version::string                                        as churn_model_version,
    clv_model_version::string                                          as clv_model_version,
    recommender_model_version::string                                  as recommender_model_version,
    feature_snapshot_date::date                                         as feature_snapshot_date,
    scored_at::{{ type_timestamptz() }}                                              as scored_at,
    churn_horizon_days::integer                                         as churn_horizon_days,
    value_horizon_days::integer                                         as value_horizon_days,
    churn_reason_1::string                                             as churn_reason_1,
    churn_reason_2::string                                             as churn_reason_2,
    churn_reason_3::string                                             as churn_reason_3,
    _loaded_at::{{ type_timestamptz() }}                                             as loaded_at
from {{ source('scores', 'scores') }}
where customer_id is not null and as_of_date is not null
qualify row_number() over (
    partition by as_of_date, customer_id
    order by _loaded_at desc nulls last, scored_at desc nulls last, run_id desc nulls last
) = 1
