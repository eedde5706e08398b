-- One row per tracking event (event_id is unique: the ingestion quarantines repeats), renamed and typed.
-- Vendor tracking (Snowplow, Segment, RudderStack, GA4: docs/tracking_vendors.md) arrives in the same raw table;
-- `vendor` says whose (c360 = the project's own format). During a migration between vendors, var tracking_sources
-- keeps each source only inside its window, so a visit tagged by both is counted once.
-- No window functions here on purpose: incremental models filter this view by date and DuckDB pushes the
-- filter down into the raw scan.

select
    event_id,
    lower(event_type)                                                  as event_type,
    occurred_at,
    {{ utc_date('occurred_at') }}                                      as occurred_date,
    anonymous_id,
    customer_id,
    page_url,
    product_id,
    search_query,
    order_id,
    quantity,
    lower(device_type)                                                 as device_type,
    os,
    browser,
    nullif(trim(referrer), '')                                         as referrer,
    nullif(trim(utm_source), '')                                       as utm_source,
    nullif(lower(trim(utm_medium)), '')                                as utm_medium,
    nullif(trim(utm_campaign), '')                                     as utm_campaign,
    _dt                                                                as landed_date,
    _loaded_at                                                         as loaded_at,
    greatest({{ utc_date('occurred_at') }}, _dt)                       as known_date,
    coalesce(vendor, 'c360')                                           as vendor,
    vendor_event_name,
    {{ json_document("vendor_extra") }}                                                as vendor_extra
from {{ source('shop', 'tracking_events') }}
where {{ tracking_source_filter("coalesce(vendor, 'c360')", 'occurred_at') }}
