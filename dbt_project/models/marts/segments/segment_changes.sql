{{
    config(
        materialized='incremental',
        partition_by=date_partition('as_of_date'),
        incremental_strategy='replace_dates',
        date_column='as_of_date',
        on_schema_change='fail'
    )
}}
-- Who entered and who left each segment on a date: one row per (as_of_date, segment, customer_id) whose membership
-- changed, versus the segment's previous evaluated date (the latest earlier as_of_date on which segment_evaluations
-- says it was evaluated; a date without scores is skipped for segments that need scores, so a scoring outage does
-- not empty and refill them). The segment's first evaluated date lists every member as entered.
--
-- Incremental per date: a run replaces run_date only. The first build (or a --full-refresh) derives every
-- evaluated date from segment_members, so the table can always be rebuilt from it.

with evaluated as (

    select
        as_of_date,
        segment,
        lag(as_of_date) over (partition by segment order by as_of_date) as previous_as_of_date
    from {{ ref('segment_evaluations') }}
    where is_evaluated
    {% if is_incremental() -%}
      and as_of_date <= {{ run_date() }}
    qualify as_of_date = {{ run_date() }}
    {%- endif %}

),

current_members as (

    select evaluated.as_of_date, evaluated.segment, members.customer_id
    from evaluated
    inner join {{ ref('segment_members') }} as members
        on  members.segment = evaluated.segment
        and members.as_of_date = evaluated.as_of_date

),

previous_members as (

    select evaluated.as_of_date, evaluated.segment, members.customer_id
    from evaluated
    inner join {{ ref('segment_members') }} as members
        on  members.segment = evaluated.segment
        and members.as_of_date = evaluated.previous_as_of_date

),

changes as (

    select *, 'entered' as change from (select * from current_members except select * from previous_members)
    union all
    select *, 'exited' as change from (select * from previous_members except select * from current_members)

)

select
    changes.as_of_date::date                                            as as_of_date,
    changes.segment::string                                            as segment,
    changes.customer_id::string                                        as customer_id,
    changes.change::string                                             as change,
    evaluated.previous_as_of_date::date                                 as previous_as_of_date
from changes
inner join evaluated
    on  evaluated.as_of_date = changes.as_of_date
    and evaluated.segment = changes.segment
