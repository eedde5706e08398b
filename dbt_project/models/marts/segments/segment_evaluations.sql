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
-- One row per (as_of_date, segment) evaluated on run_date D: the definition used, whether it could be evaluated
-- (a predicate naming a score column needs the date's scores), and the member counts. Tells an empty segment
-- (evaluated, nobody qualifies) from one that could not be evaluated (no scores for D), which segment_changes
-- needs: it compares D with the segment's previous *evaluated* date. Incremental per date like segment_members.

with scoring as (

    select count(*) as scored_customers
    from {{ ref('customer_scores') }}
    where as_of_date = {{ run_date() }}

),

snapshot as (

    select count(*) as snapshot_customers
    from {{ ref('customer_features') }}
    where as_of_date = {{ run_date() }}

),

definitions as (

    -- an inline table, not a UNION of one-row selects: Spark 4.3 fails to ship such a UNION to its executors
    -- (ClassCastException on UnionExec.children) inside this model's cross joins
    {%- if segments %}
    select * from (values
        {%- for seg in segments %}
        ('{{ seg.name }}', '{{ seg.where | replace("'", "''") }}', {{ 'true' if seg.needs_scores else 'false' }}){{ ',' if not loop.last }}
        {%- endfor %}
    ) as given(segment, segment_where, needs_scores)
    {%- else %}
    select cast(null as string) as segment, cast(null as string) as segment_where, false as needs_scores
    where false
    {%- endif %}

),

members as (

    select
        segment,
        count(*)                                                        as members,
        count(*) filter (where marketing_consent)                       as members_with_marketing_consent
    from {{ ref('segment_members') }}
    where as_of_date = {{ run_date() }}
    group by segment

)

select
    {{ run_date() }}::date                                               as as_of_date,
    definitions.segment::string                                        as segment,
    definitions.segment_where::string                                  as segment_where,
    definitions.needs_scores::boolean                                   as needs_scores,
    (snapshot.snapshot_customers > 0
        and (not definitions.needs_scores or scoring.scored_customers > 0))::boolean as is_evaluated,
    snapshot.snapshot_customers::integer                                as snapshot_customers,
    scoring.scored_customers::integer                                   as scored_customers,
    coalesce(members.members, 0)::integer                               as members,
    coalesce(members.members_with_marketing_consent, 0)::integer        as members_with_marketing_consent
from definitions
cross join scoring
cross join snapshot
left join members on members.segment = definitions.segment
where {{ run_date() }} is not null
