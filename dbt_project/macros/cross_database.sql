{#
  What DuckDB and Spark SQL spell differently, for expressions the models share (#16; docs/scale.md "Spark SQL").
  default__ is DuckDB (the project's default warehouse), spark__ is dbt-spark. The macros that differ by whole
  statements (raw tables, score views, incremental strategies, version ranking) live beside their DuckDB versions.
#}

{% macro type_timestamptz() -%}
  {#- an instant: DuckDB's TIMESTAMPTZ; Spark's TIMESTAMP is one already (shown in the session time zone, UTC) -#}
  {{- adapter.dispatch('type_timestamptz', 'c360')() -}}
{%- endmacro %}
{% macro default__type_timestamptz() -%} timestamptz {%- endmacro %}
{% macro spark__type_timestamptz() -%} timestamp {%- endmacro %}


{% macro utc_timestamp_literal(day) -%}
  {#- 00:00 UTC of a Python date, as a literal instant -#}
  {{- adapter.dispatch('utc_timestamp_literal', 'c360')(day) -}}
{%- endmacro %}
{% macro default__utc_timestamp_literal(day) -%} timestamptz '{{ day.isoformat() }} 00:00:00+00' {%- endmacro %}
{% macro spark__utc_timestamp_literal(day) -%} timestamp '{{ day.isoformat() }} 00:00:00Z' {%- endmacro %}


{% macro json_document(text) -%}
  {#- a landed JSON text as the warehouse's JSON value (DuckDB JSON; Spark keeps the text and parses per use) -#}
  {{- adapter.dispatch('json_document', 'c360')(text) -}}
{%- endmacro %}
{% macro default__json_document(text) -%} {{ text }}::json {%- endmacro %}
{% macro spark__json_document(text) -%} {{ text }} {%- endmacro %}


{% macro json_text(document, path) -%}
  {#- the string at a JSONPath ('$.traits.email') of a json_document(), null when absent -#}
  {{- adapter.dispatch('json_text', 'c360')(document, path) -}}
{%- endmacro %}
{% macro default__json_text(document, path) -%} json_extract_string({{ document }}, '{{ path }}') {%- endmacro %}
{% macro spark__json_text(document, path) -%} get_json_object({{ document }}, '{{ path }}') {%- endmacro %}


{% macro sha256_hex(text) -%}
  {#- lower-case hex SHA-256 of a string -#}
  {{- adapter.dispatch('sha256_hex', 'c360')(text) -}}
{%- endmacro %}
{% macro default__sha256_hex(text) -%} sha256({{ text }}) {%- endmacro %}
{% macro spark__sha256_hex(text) -%} sha2({{ text }}, 256) {%- endmacro %}


{#
  Ordered aggregates. DuckDB orders inside the aggregate ({{ first_by('x', 'a desc, b') }}); Spark SQL has no ordered
  first/list, so it collects (keys, value) structs and sorts them with a comparator that follows DuckDB's default
  NULLS LAST in both directions. order_by is a plain list of keys: "a desc, b" (no commas inside a key).
#}
{% macro _sort_keys(order_by) %}
  {%- set keys = [] -%}
  {%- for part in order_by.split(',') -%}
    {%- set words = part.strip().split(' ') -%}
    {%- set desc = words | length > 1 and words[-1] | lower == 'desc' -%}
    {%- set expr = (words[:-1] | join(' ')) if (words | length > 1 and words[-1] | lower in ('asc', 'desc')) else part.strip() -%}
    {%- do keys.append((expr, desc)) -%}
  {%- endfor -%}
  {{- return(keys) -}}
{% endmacro %}

{% macro _spark_sorted_pairs(value, order_by, filter) -%}
  {%- set keys = _sort_keys(order_by) -%}
  {%- set fields = [] -%}
  {%- for expr, desc in keys -%}{%- do fields.append("'k" ~ loop.index ~ "', " ~ expr) -%}{%- endfor -%}
  array_sort(
    collect_list(named_struct({{ fields | join(', ') }}, 'v', {{ value }})){% if filter %} filter (where {{ filter }}){% endif %},
    (l, r) -> case
    {%- for expr, desc in keys %}
      {%- set k = 'k' ~ loop.index %}
      when l.{{ k }} is null and r.{{ k }} is not null then 1
      when l.{{ k }} is not null and r.{{ k }} is null then -1
      when l.{{ k }} {{ '>' if desc else '<' }} r.{{ k }} then -1
      when l.{{ k }} {{ '<' if desc else '>' }} r.{{ k }} then 1
    {%- endfor %}
      else 0 end)
{%- endmacro %}


{% macro first_by(value, order_by, filter=none) -%}
  {#- the value of the first row in order_by (among rows matching filter), as DuckDB's {{ first_by('value', '...') }} -#}
  {{- adapter.dispatch('first_by', 'c360')(value, order_by, filter) -}}
{%- endmacro %}
{% macro default__first_by(value, order_by, filter) -%}
  first({{ value }} order by {{ order_by }}){% if filter %} filter (where {{ filter }}){% endif %}
{%- endmacro %}
{% macro spark__first_by(value, order_by, filter) -%}
  try_element_at({{ _spark_sorted_pairs(value, order_by, filter) }}, 1).v
{%- endmacro %}


{% macro last_by(value, order_by, filter=none) -%}
  {{- adapter.dispatch('last_by', 'c360')(value, order_by, filter) -}}
{%- endmacro %}
{% macro default__last_by(value, order_by, filter) -%}
  last({{ value }} order by {{ order_by }}){% if filter %} filter (where {{ filter }}){% endif %}
{%- endmacro %}
{% macro spark__last_by(value, order_by, filter) -%}
  try_element_at({{ _spark_sorted_pairs(value, order_by, filter) }}, -1).v
{%- endmacro %}


{% macro ordered_list(value, order_by) -%}
  {#- every value of the group as a list, in order_by order -#}
  {{- adapter.dispatch('ordered_list', 'c360')(value, order_by) -}}
{%- endmacro %}
{% macro default__ordered_list(value, order_by) -%} list({{ value }} order by {{ order_by }}) {%- endmacro %}
{% macro spark__ordered_list(value, order_by) -%}
  transform({{ _spark_sorted_pairs(value, order_by, none) }}, p -> p.v)
{%- endmacro %}


{% macro distinct_sorted_list(value) -%}
  {#- the group's distinct values, sorted (the models pass columns that are never null: Spark's collect_set drops nulls) -#}
  {{- adapter.dispatch('distinct_sorted_list', 'c360')(value) -}}
{%- endmacro %}
{% macro default__distinct_sorted_list(value) -%} list(distinct {{ value }} order by {{ value }}) {%- endmacro %}
{% macro spark__distinct_sorted_list(value) -%} sort_array(collect_set({{ value }})) {%- endmacro %}


{% macro concat_lists(list_column) -%}
  {#- the group's lists, concatenated (order of the groups' rows not defined) -#}
  {{- adapter.dispatch('concat_lists', 'c360')(list_column) -}}
{%- endmacro %}
{% macro default__concat_lists(list_column) -%} flatten(list({{ list_column }})) {%- endmacro %}
{% macro spark__concat_lists(list_column) -%} flatten(collect_list({{ list_column }})) {%- endmacro %}


{% macro empty_list() -%}{{- adapter.dispatch('empty_list', 'c360')() -}}{%- endmacro %}
{% macro default__empty_list() -%} [] {%- endmacro %}
{% macro spark__empty_list() -%} array() {%- endmacro %}


{% macro last_value_ignore_nulls(value) -%}
  {#- window function: the last non-null value in the frame -#}
  {{- adapter.dispatch('last_value_ignore_nulls', 'c360')(value) -}}
{%- endmacro %}
{% macro default__last_value_ignore_nulls(value) -%} last_value({{ value }} ignore nulls) {%- endmacro %}
{% macro spark__last_value_ignore_nulls(value) -%} last_value({{ value }}, true) {%- endmacro %}


{% macro struct_of(fields) -%}
  {#- a struct: fields is a list of column names (kept as field names) or of (name, expression) pairs -#}
  {{- adapter.dispatch('struct_of', 'c360')(fields) -}}
{%- endmacro %}
{% macro default__struct_of(fields) -%}
  {%- set parts = [] -%}
  {%- for f in fields -%}
    {%- do parts.append(f if f is string else f[0] ~ ' := ' ~ f[1]) -%}
  {%- endfor -%}
  struct_pack({{ parts | join(', ') }})
{%- endmacro %}
{% macro spark__struct_of(fields) -%}
  {%- set parts = [] -%}
  {%- for f in fields -%}
    {%- do parts.append("'" ~ f ~ "', " ~ f if f is string else "'" ~ f[0] ~ "', " ~ f[1]) -%}
  {%- endfor -%}
  named_struct({{ parts | join(', ') }})
{%- endmacro %}


{% macro sort_key(exprs) -%}
  {#- several values compared left to right (a row in DuckDB, a struct in Spark), for min_by/max_by -#}
  {{- adapter.dispatch('sort_key', 'c360')(exprs) -}}
{%- endmacro %}
{% macro default__sort_key(exprs) -%} ({{ exprs | join(', ') }}) {%- endmacro %}
{% macro spark__sort_key(exprs) -%} struct({{ exprs | join(', ') }}) {%- endmacro %}


{% macro seconds_between(start, end) -%}
  {#- whole seconds from one instant to another -#}
  {{- adapter.dispatch('seconds_between', 'c360')(start, end) -}}
{%- endmacro %}
{% macro default__seconds_between(start, end) -%} datediff('second', {{ start }}, {{ end }}) {%- endmacro %}
{% macro spark__seconds_between(start, end) -%} timestampdiff(SECOND, {{ start }}, {{ end }}) {%- endmacro %}


{% macro regex_contains(text, pattern) -%}
  {#- true when the regular expression `pattern` (a Python string) matches somewhere in text -#}
  {{- adapter.dispatch('regex_contains', 'c360')(text, pattern) -}}
{%- endmacro %}
{% macro default__regex_contains(text, pattern) -%} regexp_matches({{ text }}, '{{ pattern }}') {%- endmacro %}
{#- Spark un-escapes backslashes in string literals: double them so the pattern arrives unchanged -#}
{% macro spark__regex_contains(text, pattern) -%} regexp_like({{ text }}, '{{ pattern | replace("\\", "\\\\") }}') {%- endmacro %}


{% macro unnest_list(list_column) -%}
  {#- in a select list: one row per element of the list (none for an empty or null list) -#}
  {{- adapter.dispatch('unnest_list', 'c360')(list_column) -}}
{%- endmacro %}
{% macro default__unnest_list(list_column) -%} unnest({{ list_column }}) {%- endmacro %}
{% macro spark__unnest_list(list_column) -%} explode({{ list_column }}) {%- endmacro %}


{% macro days_between(start, end) -%}
  {#- whole days from one date to another (DuckDB's date - date; Spark's would be an interval) -#}
  {{- adapter.dispatch('days_between', 'c360')(start, end) -}}
{%- endmacro %}
{% macro default__days_between(start, end) -%} ({{ end }} - {{ start }}) {%- endmacro %}
{% macro spark__days_between(start, end) -%} datediff({{ end }}, {{ start }}) {%- endmacro %}


{% macro fdiv(numerator, denominator) -%}
  {#- a / b in double precision, as DuckDB divides whatever the types; Spark keeps decimals decimal (exact, then
      rounded half-up), which differs in the last digit once the result is cast back to a decimal -#}
  {{- adapter.dispatch('fdiv', 'c360')(numerator, denominator) -}}
{%- endmacro %}
{#- both operands parenthesised: they are expressions (a - b / c would divide b alone) -#}
{% macro default__fdiv(numerator, denominator) -%} ({{ numerator }}) / ({{ denominator }}) {%- endmacro %}
{% macro spark__fdiv(numerator, denominator) -%} cast(({{ numerator }}) as double) / ({{ denominator }}) {%- endmacro %}
