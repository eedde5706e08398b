{#
  The run's logical date and the windows derived from it. Every model reads dates through these macros,
  never through now(): the same run_date always selects the same data.
#}

{% macro run_date_value() %}
  {#- The run date as a Python date, or none when it cannot be known (parse time, empty warehouse). -#}
  {%- set raw = var('run_date', '') | string | trim -%}
  {%- if raw not in ('', 'None', 'none', 'null') -%}
    {%- set parsed = modules.datetime.datetime.strptime(raw, '%Y-%m-%d') -%}
    {{- return(parsed.date()) -}}
  {%- endif -%}
  {%- if not execute -%}
    {{- return(none) -}}
  {%- endif -%}
  {%- set result = run_query("select max(_dt) from " ~ source('shop', 'transactions')) -%}
  {%- set latest = result.columns[0].values()[0] if result and result.rows | length > 0 else none -%}
  {{- return(latest) -}}
{% endmacro %}


{% macro date_literal(value) -%}
  {%- if value is none -%} cast(null as date) {%- else -%} date '{{ value.strftime("%Y-%m-%d") }}' {%- endif -%}
{%- endmacro %}


{% macro run_date() -%}
  {#- SQL literal of the run date: var run_date, default max(_dt) of raw.transactions. -#}
  {{- date_literal(run_date_value()) -}}
{%- endmacro %}


{% macro int_var(name) -%}
  {#- Vars set through env_var() arrive as strings; fail clearly when one is not a whole number. -#}
  {%- set raw = var(name) | string | trim -%}
  {%- if not (raw | replace('-', '', 1)).isdigit() -%}
    {{ exceptions.raise_compiler_error("dbt var '" ~ name ~ "' must be a whole number, got '" ~ raw ~ "'") }}
  {%- endif -%}
  {{- return(raw | int) -}}
{%- endmacro %}


{% macro lookback_start(catch_up=true) -%}
  {#-
    First known date the incremental models recompute: run_date - lookback_days, or earlier when the table's
    latest known_date is older (nights were skipped: the run catches up from the day after it).
    The replace_window strategy calls this again before deleting, on the unchanged table: same answer.
  -#}
  {%- set d = run_date_value() -%}
  {%- if d is none -%}
    {{- return('cast(null as date)') -}}
  {%- endif -%}
  {%- set start = d - modules.datetime.timedelta(days=int_var('lookback_days')) -%}
  {%- if catch_up and execute and is_incremental() -%}
    {%- set result = run_query("select max(known_date) from " ~ this ~ " where known_date <= " ~ date_literal(d)) -%}
    {%- set last = result.columns[0].values()[0] if result and result.rows | length > 0 else none -%}
    {%- if last is not none and last + modules.datetime.timedelta(days=1) < start -%}
      {%- set start = last + modules.datetime.timedelta(days=1) -%}
    {%- endif -%}
  {%- endif -%}
  {{- return(date_literal(start)) -}}
{%- endmacro %}


{% macro utc_date(ts) -%}
  {{- adapter.dispatch('utc_date', 'c360')(ts) -}}
{%- endmacro %}

{% macro default__utc_date(ts) -%}
  {#- The UTC calendar date of a TIMESTAMPTZ, whatever the session time zone. -#}
  cast(timezone('UTC', {{ ts }}) as date)
{%- endmacro %}

{% macro spark__utc_date(ts) -%}
  {#- Spark's TIMESTAMP is an instant, shown in the session time zone, which the spark profile sets to UTC -#}
  to_date({{ ts }})
{%- endmacro %}


{% macro day_start_utc(date_expr) -%}
  {{- adapter.dispatch('day_start_utc', 'c360')(date_expr) -}}
{%- endmacro %}

{% macro default__day_start_utc(date_expr) -%}
  {#- 00:00 UTC of a date, as TIMESTAMPTZ. -#}
  timezone('UTC', cast({{ date_expr }} as timestamp))
{%- endmacro %}

{% macro spark__day_start_utc(date_expr) -%}
  cast({{ date_expr }} as timestamp)
{%- endmacro %}


{% macro float_var(name) -%}
  {#- A numeric var (set through env_var(), so a string): fail clearly when it is not a number. -#}
  {%- set raw = var(name) | string | trim -%}
  {%- set digits = raw | replace('-', '', 1) | replace('.', '', 1) -%}
  {%- if not digits.isdigit() -%}
    {{ exceptions.raise_compiler_error("dbt var '" ~ name ~ "' must be a number, got '" ~ raw ~ "'") }}
  {%- endif -%}
  {{- return(raw | float) -}}
{%- endmacro %}


{% macro landed_or_occurred_since(start, landed_date='landed_date', occurred_at='occurred_at') -%}
  {#-
    A pre-filter for "known_date >= start" on a tracking event (known_date = greatest(occurred date, landed date)):
    the same rows, but written on the raw columns so that DuckDB skips old row groups instead of computing
    known_date for every event of the history (30x faster on a year of events). Keep the exact known_date
    condition beside it; this only makes the scan cheap.
  -#}
  ({{ landed_date }} >= {{ start }} or {{ occurred_at }} >= {{ day_start_utc(start) }})
{%- endmacro %}
