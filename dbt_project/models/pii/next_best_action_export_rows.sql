{{ config(materialized=reader_view()) }}
-- PERSONAL DATA. What the next-best-action export writes (c360/exports, docs/exports.md): one row per as_of_date and
-- customer with an action (not none) in marts.customer_next_best_action. The export writes the consent_ok rows of
-- a date to next_best_action.csv / .parquet; every decision is made here or in the mart.
--
-- A view in pii for the reasons of segment_export_rows: the email lives only in pii, "still consenting now" is read
-- when the export runs, and erasure has nothing to do here.
--
-- Consent (`consent_ok`): the mart gives an action only with marketing consent as of the date; the current
-- contacts row (when the customer has one) must still say yes. Email and names only when consent_ok.

with actions as (

    select * from {{ ref('customer_next_best_action') }}
    where action <> 'none'

),

decided as (

    select
        actions.*,
        actions.marketing_consent and coalesce(contact.marketing_consent, true)   as consent_ok,
        contact.email,
        contact.first_name,
        contact.last_name
    from actions
    -- one row per customer (pii_customer_contacts' grain)
    left join {{ ref('pii_customer_contacts') }} as contact on contact.customer_id = actions.customer_id

)

select
    as_of_date::date                                                    as as_of_date,
    customer_id::string                                                as customer_id,
    consent_ok::boolean                                                 as consent_ok,
    (case when consent_ok then email end)::string                      as email,
    (case when consent_ok then first_name end)::string                 as first_name,
    (case when consent_ok then last_name end)::string                  as last_name,
    action::string                                                     as action,
    product_id::string                                                 as product_id,
    expected_value_eur::double                                          as expected_value_eur,
    reason::string                                                     as reason,
    run_id::string                                                     as run_id,
    churn_model_version::string                                        as churn_model_version,
    clv_model_version::string                                          as clv_model_version,
    recommender_model_version::string                                  as recommender_model_version,
    feature_snapshot_date::date                                         as feature_snapshot_date
from decided
