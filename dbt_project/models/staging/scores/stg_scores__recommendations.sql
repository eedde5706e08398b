-- One row per as_of_date, customer and rank: the recommended products of that date, rank 1 = best. A duplicated
-- key (should the loader ever append) keeps the most recently loaded row.

select
    as_of_date::date                                                    as as_of_date,
    customer_id::string                                                as customer_id,
    {{ adapter.quote('rank') }}::integer                                                     as rank,
    product_id::string                                                 as product_id,
    score::double                                                       as score,
    lower(source)::string                                              as source,
    run_id::string                                                     as run_id,
    recommender_model_version::string                                  as recommender_model_version,
    _loaded_at::{{ type_timestamptz() }}                                             as loaded_at
from {{ source('scores', 'recommendations') }}
where customer_id is not null and as_of_date is not null and {{ adapter.quote('rank') }} is not null and product_id is not null
qualify row_number() over (
    partition by as_of_date, customer_id, {{ adapter.quote('rank') }}
    order by _loaded_at desc nulls last, run_id desc nulls last, product_id
) = 1
