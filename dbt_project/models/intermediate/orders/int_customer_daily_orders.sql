{{
    config(
        materialized='incremental',
        partition_by=date_partition('known_date'),
        incremental_strategy='replace_window',
        window_column='known_date',
        replace_reloaded=['customer_id', 'activity_date'],
        on_schema_change='fail'
    )
}}
-- A customer's purchases and returns per day, as known at the end of each day: one row per customer,
-- activity_date and known_date at which that customer-day changed (a new line, a re-sent line, a late return).
-- For a date D, the latest known_date <= D of each customer-day is the customer-day an end-of-D snapshot sees;
-- lifetime and windowed order features are sums over those rows, so they never rescan order lines.
--
-- Incremental: recomputes the states of known dates run_date - lookback_days .. run_date, and every state of the
-- customer-days that a landed file replaced or deleted since touched, whatever their dates (replace_reloaded:
-- macros/reloaded_transactions.sql), so a line the corrected file removed leaves no trace in any state.

-- which lines were on which customer-day when: no version ranking needed (DuckDB then skips the view's window)
with versions as (

    select order_id, line_key, customer_id, activity_date, known_date
    from {{ ref('stg_shop__transactions') }}
    where known_date <= {{ run_date() }}
      and not is_test

),

changed_lines as (

    select distinct line_key, known_date as state_known_date
    from versions
    {% if is_incremental() -%}
    where known_date >= {{ lookback_start() }}
    {%- endif %}

),

{% if is_incremental() -%}
-- customer-days a replaced or deleted landed file touched: all their states are rebuilt (the strategy deletes the
-- old ones), at every known date at which a line that was ever on that day changed
reloaded_days as (

    select distinct customer_id, activity_date
    from ({{ reloaded_transactions() }})

),

reloaded_states as (

    select distinct
        on_day.customer_id,
        on_day.activity_date,
        later.known_date                                                 as state_known_date
    from versions as on_day
    inner join reloaded_days
        on  reloaded_days.customer_id = on_day.customer_id
        and reloaded_days.activity_date = on_day.activity_date
    inner join versions as later
        on  later.line_key = on_day.line_key
        and later.known_date >= on_day.known_date

),
{%- endif %}

-- every customer-day a changed line was on, in any version known by then, gets a new state
changed_customer_days as (

    select distinct
        versions.customer_id,
        versions.activity_date,
        changed_lines.state_known_date
    from changed_lines
    inner join versions
        on  versions.line_key = changed_lines.line_key
        and versions.known_date <= changed_lines.state_known_date
    {% if is_incremental() -%}
    union
    select customer_id, activity_date, state_known_date from reloaded_states
    {%- endif %}

),

-- all lines that had been on those customer-days by then ...
candidate_lines as (

    select distinct
        days.customer_id,
        days.activity_date,
        days.state_known_date,
        versions.order_id,
        versions.line_key
    from changed_customer_days as days
    inner join versions
        on  versions.customer_id = days.customer_id
        and versions.activity_date = days.activity_date
        and versions.known_date <= days.state_known_date

),

-- ... in the version that was current at the state's known date, if that version is still on that day
-- the candidate lines' versions with their validity, ranked among themselves (a line's versions all share its
-- line_key), not the whole history; a full build ranks everything, as the staging view does
ranked_versions as (

    select *
    from (
        {% if is_incremental() -%}
        {{ transaction_versions(where='line_key in (select line_key from candidate_lines)',
                               raw_where='order_id in (select order_id from candidate_lines)') }}
        {%- else -%}
        select * from {{ ref('stg_shop__transactions') }}
        {%- endif %}
    )
    where known_date <= {{ run_date() }}
      and not is_test

),

state_lines as (

    select
        candidates.state_known_date,
        versions.*
    from candidate_lines as candidates
    inner join ranked_versions as versions
        on  versions.line_key = candidates.line_key
        and versions.customer_id = candidates.customer_id
        and versions.activity_date = candidates.activity_date
        and versions.valid_from_date <= candidates.state_known_date
        and (versions.valid_to_date is null or versions.valid_to_date > candidates.state_known_date)

),

-- the product category as it was known at the state's known date
products as (

    select product_id, category, valid_from_date, valid_to_date
    from {{ ref('stg_shop__products') }}

),

priced_lines as (

    select
        state_lines.customer_id,
        state_lines.activity_date,
        state_lines.state_known_date,
        state_lines.order_id,
        state_lines.line_type,
        state_lines.status,
        state_lines.quantity,
        cast({{ to_base_currency('state_lines.amount', 'state_lines.currency') }} as decimal(18, 4)) as amount_eur,
        coalesce(products.category, 'unknown')                           as category
    from state_lines
    {{ fx_asof_join('state_lines', 'currency', 'activity_date') }}
    left join products
        on  products.product_id = state_lines.product_id
        and products.valid_from_date <= state_lines.state_known_date
        and (products.valid_to_date is null or products.valid_to_date > state_lines.state_known_date)

),

day_totals as (

    select
        customer_id,
        activity_date,
        state_known_date,
        count(distinct order_id) filter (where line_type = 'sale' and status = 'completed')     as orders_count,
        count(distinct order_id) filter (where line_type = 'sale' and status = 'cancelled')     as cancelled_orders_count,
        sum(coalesce(quantity, 1)) filter (where line_type = 'sale' and status = 'completed')   as items_count,
        sum(amount_eur) filter (where line_type = 'sale' and status = 'completed')              as gross_revenue_eur,
        sum(-amount_eur) filter (where line_type = 'return' and status = 'completed')           as returned_revenue_eur,
        count(distinct order_id) filter (where line_type = 'return' and status = 'completed')   as returns_count,
        sum(abs(coalesce(quantity, 1))) filter (where line_type = 'return' and status = 'completed')
                                                                                                as returned_items
    from priced_lines
    group by customer_id, activity_date, state_known_date

),

category_totals as (

    select
        customer_id,
        activity_date,
        state_known_date,
        category,
        sum(amount_eur)                                                  as gross_revenue_eur,
        sum(coalesce(quantity, 1))                                       as items_count
    from priced_lines
    where line_type = 'sale' and status = 'completed'
    group by customer_id, activity_date, state_known_date, category

),

category_mix as (

    select
        customer_id,
        activity_date,
        state_known_date,
        {{ ordered_list(struct_of([
            ('category', 'category'),
            ('gross_revenue_eur', 'cast(gross_revenue_eur as decimal(18, 4))'),
            ('items_count', 'cast(items_count as integer)'),
        ]), 'category') }}                                                                as category_mix
    from category_totals
    group by customer_id, activity_date, state_known_date

)

-- a state whose lines all moved away still gets a row (of zeros): it overrides the earlier state
select
    days.customer_id,
    days.activity_date,
    days.state_known_date                                                as known_date,
    coalesce(totals.orders_count, 0)::integer                            as orders_count,
    coalesce(totals.cancelled_orders_count, 0)::integer                  as cancelled_orders_count,
    coalesce(totals.items_count, 0)::integer                             as items_count,
    coalesce(totals.gross_revenue_eur, 0)::decimal(18, 4)                as gross_revenue_eur,
    coalesce(totals.returned_revenue_eur, 0)::decimal(18, 4)             as returned_revenue_eur,
    coalesce(totals.returns_count, 0)::integer                           as returns_count,
    coalesce(totals.returned_items, 0)::integer                          as returned_items,
    coalesce(mix.category_mix, {{ empty_list() }})                                       as category_mix
from changed_customer_days as days
left join day_totals as totals
    on  totals.customer_id = days.customer_id
    and totals.activity_date = days.activity_date
    and totals.state_known_date = days.state_known_date
left join category_mix as mix
    on  mix.customer_id = days.customer_id
    and mix.activity_date = days.activity_date
    and mix.state_known_date = days.state_known_date
