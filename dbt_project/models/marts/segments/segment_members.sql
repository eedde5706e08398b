{%- set segments = segment_definitions() -%}
{{
    config(
        materialized='incremental',
        partition_by=date_partition('as_of_date'),
        incremental_strategy='replace_dates',
        date_column='as_of_date',
        replace_run_date=(segments is not none),
        full_refresh=false,
        on_schema_change='fail'
    )
}}
-- Who is in which marketing segment on run_date D: one row per (as_of_date, segment, customer_id). Each segment's
-- `where` (segments.yml, via the segment definitions: macros/segments.sql) is evaluated over the feature snapshot
-- of D joined to the scores of D. A segment whose predicate names a score column only admits customers scored for
-- D, so without scores it has no members (segment_evaluations says it was not evaluated). Exports read this table.
--
-- Incremental per date: a run replaces D only; earlier dates are history (evaluated with the definitions of their
-- night) and survive a --full-refresh. Without segment definitions (a hand run) the table is left untouched.
{%- if segments is none %}
-- No segment definitions were given (var segments / C360_SEGMENTS_JSON): nothing is built or replaced.
{%- endif %}

with features as (

    select * from {{ ref('customer_features') }}
    where as_of_date = {{ run_date() }}

),

scores as (

    select * from {{ ref('customer_scores') }}
    where as_of_date = {{ run_date() }}

),

-- the columns a predicate can use: the snapshot's features plus the date's scores (null when not scored)
candidates as (

    select
        features.*,
        scores.churn_probability,
        scores.churn_decile,
        scores.p_alive,
        scores.expected_purchases,
        scores.predicted_value_eur,
        scores.value_decile,
        scores.run_id,
        scores.churn_model_version,
        scores.clv_model_version,
        scores.recommender_model_version,
        scores.feature_snapshot_date,
        scores.customer_id is not null                                  as is_scored
    from features
    left join scores on scores.customer_id = features.customer_id

),

members as (

    {%- for seg in (segments or []) %}
    select '{{ seg.name }}' as segment, *
    from candidates
    where ({{ seg.where }}){% if seg.needs_scores %} and is_scored{% endif %}
    {% if not loop.last %}union all{% endif %}
    {%- else %}
    select cast(null as string) as segment, * from candidates where false
    {%- endfor %}

)

select
    as_of_date::date                                                    as as_of_date,
    segment::string                                                    as segment,
    customer_id::string                                                as customer_id,
    churn_probability::double                                           as churn_probability,
    churn_decile::integer                                               as churn_decile,
    p_alive::double                                                     as p_alive,
    predicted_value_eur::double                                         as predicted_value_eur,
    value_decile::integer                                               as value_decile,
    marketing_consent::boolean                                          as marketing_consent,
    run_id::string                                                     as run_id,
    churn_model_version::string                                        as churn_model_version,
    clv_model_version::string                                          as clv_model_version,
    recommender_model_version::string                                  as recommender_model_version,
    feature_snapshot_date::date                                         as feature_snapshot_date
from members
