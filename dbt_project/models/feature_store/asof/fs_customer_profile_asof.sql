-- Working table for the run's snapshot: one row per customer with a profile version known at the end of
-- run_date, in the version that was current then (so consent is the consent a campaign could have used).

select
    customer_id,
    {{ run_date() }}                                    as as_of_date,
    signup_date,
    country,
    acquisition_channel,
    marketing_consent,
    consent_updated_at
from {{ ref('stg_shop__customers') }}
where valid_from_date <= {{ run_date() }}
  and (valid_to_date is null or valid_to_date > {{ run_date() }})
