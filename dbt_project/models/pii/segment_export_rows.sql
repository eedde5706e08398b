{{ config(materialized=reader_view()) }}
-- PERSONAL DATA. What the segment exports write (c360/exports, docs/exports.md): one row per as_of_date, segment and
-- customer_id who is a member on the date or exited the segment on it. The exports only select and filter these rows
-- (member rows -> <segment>.csv/.parquet, change rows -> .entered.csv/.exited.csv); every decision is made here.
--
-- A view, in pii, on purpose:
--   * consent "still now" is read from the contacts model when the export runs, so re-exporting an old date after a
--     withdrawal leaves the customer out (a table would freeze the consent of the night it was built);
--   * erasure (c360/privacy.py) deletes from base tables only; a view holds no rows of its own, so nothing to erase;
--   * the rows carry email and names, which only the pii schema may hold.
--
-- Consent (`consent_ok`): true only when the date's segment_members rows (any segment), the date's feature snapshot
-- and the current contacts row (when the customer has one) all say true, and at least one of the first two speaks
-- for the date. Unknown = no.

with members as (

    select * from {{ ref('segment_members') }}

),

changes as (

    select as_of_date, segment, customer_id, change from {{ ref('segment_changes') }}

),

contacts as (

    select * from {{ ref('pii_customer_contacts') }}

),

-- consent as of the date, per source: the date's member rows (all segments) and the date's feature snapshot
member_consent as (

    select as_of_date, customer_id, bool_and(coalesce(marketing_consent, false)) as consent
    from members
    group by as_of_date, customer_id

),

feature_consent as (

    select as_of_date, customer_id, bool_and(coalesce(marketing_consent, false)) as consent
    from {{ ref('customer_features') }}
    group by as_of_date, customer_id

),

-- the top three recommendations of the date, rank order (ties by product_id)
ranked_recommendations as (

    select
        as_of_date,
        customer_id,
        product_id::string as product_id,
        row_number() over (partition by as_of_date, customer_id order by rank, product_id) as position
    from {{ ref('customer_recommendations') }}

),

recommendations as (

    select
        as_of_date,
        customer_id,
        max(product_id) filter (where position = 1) as rec_1,
        max(product_id) filter (where position = 2) as rec_2,
        max(product_id) filter (where position = 3) as rec_3
    from ranked_recommendations
    where position <= 3
    group by as_of_date, customer_id

),

recommendation_dates as (

    select distinct as_of_date from {{ ref('customer_recommendations') }}

),

-- the run of the date as the change files name it: the smallest run_id among the date's members
date_runs as (

    select as_of_date, min(run_id) as date_run_id from members group by as_of_date

),

segment_rows as (

    select
        coalesce(members.as_of_date, changes.as_of_date) as as_of_date,
        coalesce(members.segment, changes.segment) as segment,
        coalesce(members.customer_id, changes.customer_id) as customer_id,
        members.customer_id is not null as is_member,
        changes.change,
        members.* except (as_of_date, segment, customer_id, marketing_consent)
    from members
    full outer join changes
        on  changes.as_of_date = members.as_of_date
        and changes.segment = members.segment
        and changes.customer_id = members.customer_id

),

-- the consent decision of each row (see the header); a missing contacts row is no current statement (the email and
-- names are empty then anyway)
decided as (

    select
        segment_rows.*,
        coalesce(
            (member_consent.consent is not null or feature_consent.consent is not null)
            and coalesce(member_consent.consent, true)
            and coalesce(feature_consent.consent, true)
            and coalesce(contact.marketing_consent, true),
            false
        ) as consent_ok,
        contact.email,
        contact.first_name,
        contact.last_name
    from segment_rows
    left join member_consent
        on  member_consent.as_of_date = segment_rows.as_of_date
        and member_consent.customer_id = segment_rows.customer_id
    left join feature_consent
        on  feature_consent.as_of_date = segment_rows.as_of_date
        and feature_consent.customer_id = segment_rows.customer_id
    -- one row per customer (pii_customer_contacts' grain)
    left join contacts as contact
        on  contact.customer_id = segment_rows.customer_id

)

select
    decided.as_of_date::date                                            as as_of_date,
    decided.segment::string                                            as segment,
    decided.customer_id::string                                        as customer_id,
    decided.is_member::boolean                                          as is_member,
    decided.change::string                                             as change,
    decided.consent_ok::boolean                                         as consent_ok,
    (case when decided.consent_ok then decided.email end)::string      as email,
    (case when decided.consent_ok then decided.first_name end)::string as first_name,
    (case when decided.consent_ok then decided.last_name end)::string  as last_name,
    -- rounded so files stay readable and byte-stable across float noise in upstream recomputation
    round(decided.churn_probability, 6)::double                         as churn_probability,
    decided.churn_decile::integer                                       as churn_decile,
    round(decided.p_alive, 6)::double                                   as p_alive,
    round(decided.predicted_value_eur, 2)::double                       as predicted_value_eur,
    decided.value_decile::integer                                       as value_decile,
    recommendations.rec_1::string                                      as rec_1,
    recommendations.rec_2::string                                      as rec_2,
    recommendations.rec_3::string                                      as rec_3,
    decided.run_id::string                                             as run_id,
    decided.churn_model_version::string                                as churn_model_version,
    decided.clv_model_version::string                                  as clv_model_version,
    decided.recommender_model_version::string                          as recommender_model_version,
    decided.feature_snapshot_date::date                                 as feature_snapshot_date,
    date_runs.date_run_id::string                                      as date_run_id,
    (recommendation_dates.as_of_date is not null)::boolean              as date_has_recommendations
from decided
left join recommendations
    on  recommendations.as_of_date = decided.as_of_date
    and recommendations.customer_id = decided.customer_id
left join date_runs
    on  date_runs.as_of_date = decided.as_of_date
left join recommendation_dates
    on  recommendation_dates.as_of_date = decided.as_of_date
