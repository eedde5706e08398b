-- One row per landed customer version, without personal data (email and names live only in the pii schema).
-- Every version is kept so consent and country can be evaluated as of any date.

with source as (

    select * from {{ source('shop', 'customers') }}

),

typed as (

    select
        md5(_source_file || ':' || _source_line::string)            as customer_version_id,
        customer_id,
        signup_at,
        upper(country)                                                 as country,
        lower(acquisition_channel)                                     as acquisition_channel,
        coalesce(marketing_consent, false)                             as marketing_consent,
        consent_updated_at,
        updated_at,
        _dt                                                            as landed_date,
        _loaded_at                                                     as loaded_at,
        _source_file                                                   as source_file,
        _source_line                                                   as source_line,
        -- visible from the end of the day it was both valid (updated_at) and landed
        greatest({{ utc_date('updated_at') }}, _dt)                    as known_date
    from source

),

ranked as (

    {{ rank_versions('typed', 'customer_id') }}

)

select
    customer_version_id,
    customer_id,
    signup_at,
    {{ utc_date('signup_at') }}                                        as signup_date,
    country,
    acquisition_channel,
    marketing_consent,
    consent_updated_at,
    updated_at,
    landed_date,
    loaded_at,
    known_date,
    known_date                                                         as valid_from_date,
    valid_to_date,
    version_rank,
    version_rank = 1                                                   as is_latest
from ranked
