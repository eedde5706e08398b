{#
  fx_asof_join(alias, currency_column, date_column): ASOF joins to the fx_rates seed picking, per row, the latest
  rate valid on its date of the row's currency (`fx`) and of the base currency (`fx_base`, var base_currency).
  Convert with to_base_currency() after it.
#}
{% macro fx_asof_join(alias, currency_column, date_column, date_expr=none) -%}
  {#- date_expr: a date expression instead of alias.date_column -#}
  {%- set day = date_expr if date_expr else alias ~ '.' ~ date_column -%}
  {{- adapter.dispatch('fx_asof_join', 'c360')(alias ~ '.' ~ currency_column, day) -}}
{%- endmacro %}

{% macro default__fx_asof_join(currency, day) -%}
    asof left join {{ ref('fx_rates') }} as fx
        on  fx.currency_code = {{ currency }}
        and {{ day }} >= fx.valid_from
    asof left join (
        select valid_from, eur_per_unit from {{ ref('fx_rates') }} where currency_code = '{{ var("base_currency") }}'
    ) as fx_base
        on  {{ day }} >= fx_base.valid_from
{%- endmacro %}

{#- Spark SQL has no ASOF join: each rate is valid until the next one of its currency (a range join on a small seed) -#}
{% macro spark__fx_asof_join(currency, day) -%}
    left join (
        select currency_code, valid_from, eur_per_unit,
               lead(valid_from) over (partition by currency_code order by valid_from) as valid_until
        from {{ ref('fx_rates') }}
    ) as fx
        on  fx.currency_code = {{ currency }}
        and {{ day }} >= fx.valid_from
        and ({{ day }} < fx.valid_until or fx.valid_until is null)
    left join (
        select valid_from, eur_per_unit,
               lead(valid_from) over (order by valid_from) as valid_until
        from {{ ref('fx_rates') }} where currency_code = '{{ var("base_currency") }}'
    ) as fx_base
        on  {{ day }} >= fx_base.valid_from
        and ({{ day }} < fx_base.valid_until or fx_base.valid_until is null)
{%- endmacro %}

{#
  to_base_currency(amount, currency): the amount in the base currency (var base_currency, C360_BASE_CURRENCY).
  An amount already in the base currency is not converted (no rate needed: any date works); another currency is
  converted through the seed's EUR rates: amount * eur_per_unit(currency) / eur_per_unit(base). Ingestion
  quarantines rows without a rate (no_fx_rate), so this is never null for a loaded row.
#}
{% macro to_base_currency(amount, currency) -%}
    case when {{ currency }} = '{{ var("base_currency") }}' then {{ amount }}
         else {{ fdiv(amount ~ ' * fx.eur_per_unit', 'fx_base.eur_per_unit') }} end
{%- endmacro %}
