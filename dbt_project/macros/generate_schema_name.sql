{#
  Schemas are the folder's plain name (staging, intermediate, marts, pii, feature_store) rather than dbt's
  default <target>_<name>: analysts query marts.customer_360, not main_marts.customer_360.
#}
{% macro generate_schema_name(custom_schema_name, node) -%}
  {%- if custom_schema_name is none -%} {{ target.schema }}
  {%- else -%} {{ custom_schema_name | trim }}
  {%- endif -%}
{%- endmacro %}
