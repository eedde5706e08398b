{#
  The transaction-line versions of stg_shop__transactions (its one definition: the model is this macro).
  `where`: an optional predicate on order_id or line_key, applied BEFORE the version ranking, so that an
  incremental model ranks only the lines it rebuilds instead of the whole history (a filter on the view comes after
  its window, and DuckDB cannot push a join-derived one below it). It must keep or drop all versions of a line
  together, or the ranking changes: order_id and line_key are the same in every version of a line; a customer id or
  a date need not be.
#}
{% macro transaction_versions(where=none, raw_where=none) %}
with _tv_lines as (

    {{ transaction_lines(where, raw_where) }}

),

_tv_ranked as (

    {{ rank_versions('_tv_lines', 'line_key') }}

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
from _tv_ranked
{% endmacro %}


{#
  The same rows unranked (transaction_versions ranks these): every landed version, typed and dated, without
  version_rank, is_latest or valid_to_date. For readers that filter on a date or an id and need no ranking (which
  versions became known in a window, which customers have a transaction): no window stands between their filter and the raw table, so DuckDB
  applies the filter while it scans instead of after typing every version ever landed.
  `raw_where`: a predicate on raw.transactions' own columns, applied in the scan itself (both macros). DuckDB does not
  push a filter on a derived column (known_date, line_key) or a semi-join below the typing projection, so a reader
  that can say which raw rows it needs (order_id in (...), transactions_known_since(start)) says it here; keep the
  exact condition in `where` or after. For transaction_versions it must keep or drop all versions of a line together
  (order_id does; a date does not).
#}
{% macro transaction_lines(where=none, raw_where=none) %}
with _tv_source as (

    select * from {{ source('shop', 'transactions') }}
    {%- if raw_where %}
    -- on the raw columns, so that it is applied while scanning (a filter on order_id, or transactions_known_since)
    where {{ raw_where }}
    {%- endif %}

),

_tv_typed as (

    select
        md5(_source_file || ':' || _source_line::string)            as transaction_version_id,
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
    from _tv_source

),

_tv_with_event_time as (

    select
        *,
        order_id || '|' || line_id::string || '|' || line_type       as line_key,
        -- a return happens when the goods come back; a sale when the order is placed
        case when line_type = 'return' then coalesce(returned_at, ordered_at) else ordered_at end as event_at
    from _tv_typed

),

_tv_with_dates as (

    select
        *,
        {{ utc_date('ordered_at') }}                                   as order_date,
        {{ utc_date('event_at') }}                                     as activity_date,
        -- the first day whose end-of-day snapshot may see this version: it happened and it had arrived
        greatest({{ utc_date('event_at') }}, landed_date)              as known_date
    from _tv_with_event_time
    {%- if where %}
    -- before the ranking (see above)
    where {{ where }}
    {%- endif %}
)

select * from _tv_with_dates
{% endmacro %}


{#- a pre-filter on raw.transactions for "known_date >= start" (known_date = greatest(UTC date of event_at, landed
    date), event_at = returned_at or ordered_at): the same rows and more, on raw columns that the scan can skip row
    groups by. Keep the exact known_date condition beside it. -#}
{% macro transactions_known_since(start) -%}
  (_dt >= {{ start }} or ordered_at >= {{ day_start_utc(start) }} or returned_at >= {{ day_start_utc(start) }})
{%- endmacro %}
