{#
  tracking_source_filter(source_col, time_col): a predicate keeping each tracking source's events only inside its
  window from var tracking_sources ("segment:..2026-03-15,snowplow:2026-03-15..": source:from..until, UTC dates,
  `until` excluded, either end open; the own format is `c360`). Sources not listed are always kept; empty = true.
  Why a cut-over and not fuzzy de-duplication: during a migration both tags fire for the same visit, but with
  different cookies and event ids, so events cannot be matched reliably (an anonymous visitor has nothing in
  common between the two); a cut-over per source counts each moment once. See docs/tracking_vendors.md.
  c360/config.py validates the same string at start-up.
#}
{% macro tracking_source_filter(source_col, time_col) -%}
  {%- set spec = var('tracking_sources', '') | string | trim -%}
  {%- set conds = [] -%}
  {%- for item in spec.split(',') -%}
    {%- set item = item | trim -%}
    {%- if item -%}
      {%- set parts = item.split(':') -%}
      {%- if parts | length != 2 or '..' not in parts[1] -%}
        {{ exceptions.raise_compiler_error("tracking_sources: '" ~ item ~ "' is not <source>:<from>..<until> (e.g. segment:..2026-03-15)") }}
      {%- endif -%}
      {%- set source = parts[0] | trim | lower -%}
      {%- set bounds = parts[1].split('..') -%}
      {%- set window = [] -%}
      {%- if bounds[0] | trim -%}
        {%- do window.append(time_col ~ " >= " ~ utc_timestamp_literal(modules.datetime.date.fromisoformat(bounds[0] | trim))) -%}
      {%- endif -%}
      {%- if bounds[1] | trim -%}
        {%- do window.append(time_col ~ " < " ~ utc_timestamp_literal(modules.datetime.date.fromisoformat(bounds[1] | trim))) -%}
      {%- endif -%}
      {%- if window -%}
        {%- do conds.append("(" ~ source_col ~ " <> '" ~ source ~ "' or (" ~ window | join(' and ') ~ "))") -%}
      {%- endif -%}
    {%- endif -%}
  {%- endfor -%}
  {{- conds | join(' and ') if conds else 'true' -}}
{%- endmacro %}
