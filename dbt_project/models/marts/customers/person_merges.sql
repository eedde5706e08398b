-- Merge history: one row per customer id that joined a person other than its own, i.e. every member but the
-- anchor. A member that existed on its own first (joined_date > first_seen_date) was a person of its own, with
-- the id its customer id's hash gives, until that day: merge_kind 'merged'. One that was linked from its first day
-- (a second account created with a known email) is 'linked_at_creation'. Rebuilt from the current links each
-- night: a withdrawn link removes its merge (the person splits) instead of leaving a stale row.

select
    members.person_id,
    members.customer_id                                                         as merged_customer_id,
    'p_' || substr({{ sha256_hex('members.customer_id') }}, 1, 24)                          as previous_person_id,
    members.joined_date                                                         as merged_on,
    case when members.joined_date > members.first_seen_date
         then 'merged' else 'linked_at_creation' end                            as merge_kind,
    members.linked_by
from {{ ref('person_members') }} as members
where not members.is_anchor
