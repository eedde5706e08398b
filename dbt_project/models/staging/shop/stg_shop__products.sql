-- One row per landed product version; `is_latest` marks the current one, valid_from/to_date the known-date
-- validity used to read a product's category as it was known on a past date.

with source as (

    select * from {{ source('shop', 'products') }}

),

typed as (

    select
        md5(_source_file || ':' || _source_line::string)            as product_version_id,
        product_id,
        name                                                           as product_name,
        lower(category)                                                as category,
        lower(subcategory)                                             as subcategory,
        brand,
        price,
        upper(coalesce(currency, '{{ var("default_currency") }}'))    as currency,
        updated_at,
        _dt                                                            as landed_date,
        _loaded_at                                                     as loaded_at,
        _source_file                                                   as source_file,
        _source_line                                                   as source_line,
        greatest({{ utc_date('updated_at') }}, _dt)                    as known_date
    from source

),

ranked as (

    {{ rank_versions('typed', 'product_id') }}

)

select
    product_version_id,
    product_id,
    product_name,
    category,
    subcategory,
    brand,
    price,
    currency,
    updated_at,
    landed_date,
    loaded_at,
    known_date,
    known_date                                                         as valid_from_date,
    valid_to_date,
    version_rank,
    version_rank = 1                                                   as is_latest
from ranked
