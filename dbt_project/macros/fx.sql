{#
  fx_asof_join(alias, currency_column, date_column): an ASOF join to the fx_rates seed picking, per row,
  the latest rate of its currency valid on its date. Use `fx.eur_per_unit` after it.
#}
{% macro fx_asof_join(alias, currency_column, date_column) -%}
    asof left join {{ ref('fx_rates') }} as fx
        on  fx.currency_code = {{ alias }}.{{ currency_column }}
        and {{ alias }}.{{ date_column }} >= fx.valid_from
{%- endmacro %}
