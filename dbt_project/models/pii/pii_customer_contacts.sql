-- PERSONAL DATA. One row per customer: the current email and name with the current marketing consent.
-- The only model that reads email and names; access to the pii schema is restricted. Exports must check
-- marketing_consent before using a row.

select
    customer_id::string                                   as customer_id,
    email::string                                         as email,
    first_name::string                                    as first_name,
    last_name::string                                     as last_name,
    coalesce(marketing_consent, false)::boolean            as marketing_consent,
    consent_updated_at::{{ type_timestamptz() }}                        as consent_updated_at,
    updated_at::{{ type_timestamptz() }}                                as updated_at
from {{ source('shop', 'customers') }}
qualify row_number() over (
    partition by customer_id
    order by updated_at desc nulls last, _dt desc, _loaded_at desc, _source_file desc, _source_line desc
) = 1
