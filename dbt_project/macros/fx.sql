{#
  fx_asof_join(alias, currency_column, date_column): ASOF joins to the fx_rates seed picking, per row, the latest
  rate valid on its date of the row's currency (`fx`) and of the base currency (`fx_base`, var base_currency).
  Convert with to_base_currency() after it.
#}
{% macro fx_asof_join(alias, currency_column, date_column) -%}
    asof left join {{ ref('fx_rates') }} as fx
        on  fx.currency_code = {{ alias }}.{{ currency_column }}
        and {{ alias }}.{{ date_column }} >= fx.valid_from
    asof left join (
        select valid_from, eur_per_unit from {{ ref('fx_rates') }} where currency_code = '{{ var("base_currency") }}'
    ) as fx_base
        on  {{ alias }}.{{ date_column }} >= fx_base.valid_from
{%- endmacro %}

{#
  to_base_currency(amount, currency): the amount in the base currency (var base_currency, C360_BASE_CURRENCY).
  An amount already in the base currency is not converted (no rate needed: any date works); another currency is
  converted through the seed's EUR rates: amount * eur_per_unit(currency) / eur_per_unit(base). Ingestion
  quarantines rows without a rate (no_fx_rate), so this is never null for a loaded row.
#}
{% macro to_base_currency(amount, currency) -%}
    case when {{ currency }} = '{{ var("base_currency") }}' then {{ amount }}
         else {{ amount }} * fx.eur_per_unit / fx_base.eur_per_unit end
{%- endmacro %}
