{{ config(materialized=reader_view(), full_refresh=none) }}
-- Features joined to both labels: one row per customer and as_of_date. Label columns are null while their
-- horizon is still open. The training set of a date: select * from feature_store.training_set where as_of_date = ...

select
    features.*,
    churn.churned,
    churn.churn_horizon_days,
    value.future_net_revenue_eur,
    value.value_horizon_days
from {{ ref('customer_features') }} as features
left join {{ ref('labels_churn') }} as churn
    on churn.customer_id = features.customer_id and churn.as_of_date = features.as_of_date
left join {{ ref('labels_value') }} as value
    on value.customer_id = features.customer_id and value.as_of_date = features.as_of_date
