-- One row per landed transaction-line version: typed, contract defaults applied, with the version's validity.
-- Older versions are kept (flagged, not dropped) because the feature store must see each line as it was known
-- on any past date; `is_latest` selects the current version (updated_at desc nulls last, then arrival).

with source as (

    select * from {{ source('shop', 'transactions') }}

),

typed as (

    select
        md5(_source_file || ':' || _source_line::varchar)            as transaction_version_id,
        order_id,
        coalesce(line_id, 1)                                           as line_id,
        lower(coalesce(line_type, 'sale'))                             as line_type,
        customer_id,
        product_id,
        quantity,
        unit_price,
        coalesce(discount, 0)::decimal(18, 4)                          as discount,
        amount,
        upper(coalesce(currency, '{{ var("default_currency") }}'))    as currency,
        lower(coalesce(status, 'completed'))                           as status,
        lower(channel)                                                 as channel,
        coalesce(is_test, false)                                       as is_test,
        ordered_at,
        returned_at,
        updated_at,
        _dt                                                            as landed_date,
        _loaded_at                                                     as loaded_at,
        _source_file                                                   as source_file,
        _source_line                                                   as source_line
    from source

),

with_event_time as (

    select
        *,
        order_id || '|' || line_id::varchar || '|' || line_type       as line_key,
        -- a return happens when the goods come back; a sale when the order is placed
        case when line_type = 'return' then coalesce(returned_at, ordered_at) else ordered_at end as event_at
    from typed

),

with_dates as (

    select
        *,
        {{ utc_date('ordered_at') }}                                   as order_date,
        {{ utc_date('event_at') }}                                     as activity_date,
        -- the first day whose end-of-day snapshot may see this version: it happened and it had arrived
        greatest({{ utc_date('event_at') }}, landed_date)              as known_date
    from with_event_time

),

ranked as (

    {{ rank_versions('with_dates', 'line_key') }}

)

select
    transaction_version_id,
    line_key,
    order_id,
    line_id,
    line_type,
    customer_id,
    product_id,
    quantity,
    unit_price,
    discount,
    amount,
    currency,
    status,
    channel,
    is_test,
    ordered_at,
    returned_at,
    event_at,
    updated_at,
    order_date,
    activity_date,
    landed_date,
    loaded_at,
    known_date,
    known_date                                                         as valid_from_date,
    valid_to_date,
    version_rank,
    version_rank = 1                                                   as is_latest,
    source_file,
    source_line
from ranked
