-- Working table for the run's snapshot: one row per person (customer_id = its primary member, int_person_keys) with
-- a profile version of one of its customer ids known at the end of run_date, in the version that was current then
-- (so consent is the consent a campaign could have used). A person's profile: signup_date the earliest account's;
-- country, channel and consent_updated_at its primary member's (else the earliest other member's that has one);
-- marketing_consent the most restrictive among its members: one member without consent (a withdrawal, or a guest
-- checkout without opt-in: staging reads a missing consent as false, the landing contract's default) makes the
-- person non-consenting, since marketing reaches the human, not the id. On a shop without duplicates each person is
-- one customer: the customer's own profile.

with versions as (

    select
        customer_id,
        signup_date,
        country,
        acquisition_channel,
        marketing_consent,
        consent_updated_at
    from {{ ref('stg_shop__customers') }}
    where valid_from_date <= {{ run_date() }}
      and (valid_to_date is null or valid_to_date > {{ run_date() }})

),

members as (

    select *, member_customer_id <> customer_id as is_other_member
    from {{ by_person('versions') }}

)

select
    customer_id,
    {{ run_date() }}                                                            as as_of_date,
    min(signup_date)                                                            as signup_date,
    {{ first_by('country', 'is_other_member, member_customer_id', filter='country is not null') }}
                                                                                as country,
    {{ first_by('acquisition_channel', 'is_other_member, member_customer_id', filter='acquisition_channel is not null') }}                          as acquisition_channel,
    bool_and(marketing_consent)                                                 as marketing_consent,
    {{ first_by('consent_updated_at', 'is_other_member, member_customer_id', filter='consent_updated_at is not null') }}                           as consent_updated_at
from members
group by customer_id
