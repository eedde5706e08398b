{#
  Marketing segment definitions for the segment marts. They come from segments.yml through c360/marketing/segments.py
  (`segments_dbt_var()`): {"segments": [{"name", "where", "required_consent", "consent_column"}, ...]}.

  Where dbt finds them, first match wins:
    1. the dbt var `segments` (--vars '{segments: [...]}' or the whole {"segments": [...]} mapping): for a hand run;
    2. the environment variable C360_SEGMENTS_JSON holding that JSON: what c360.pipeline.transform sets. Preferred because a
       changed --vars makes dbt re-parse the whole project, while an env var read here only re-parses the models
       that call this macro, and only when the JSON actually changed (segments.yml edited).
  Neither given: returns none, and the segment models leave their tables as they are (a hand `dbt build` without
  the definitions must not wipe the date's segments). An empty list is a definition: no segments on that date.
#}

{% macro segment_definitions() %}
  {%- set given = var('segments', none) -%}
  {%- if given is none or (given is string and given | trim == '') -%}
    {%- set given = env_var('C360_SEGMENTS_JSON', '') | trim -%}
    {%- if given == '' -%}
      {{- return(none) -}}
    {%- endif -%}
  {%- endif -%}
  {%- if given is string -%}
    {%- set given = fromjson(given) -%}
    {%- if given is none -%}
      {{ exceptions.raise_compiler_error("segment definitions (var segments / C360_SEGMENTS_JSON) are not valid JSON") }}
    {%- endif -%}
  {%- endif -%}
  {%- if given is mapping -%}
    {%- set given = given.get('segments', []) -%}
  {%- endif -%}
  {%- if given is string or given is mapping or given is not iterable -%}
    {{ exceptions.raise_compiler_error("segment definitions must be a list of {name, where} mappings, got: " ~ given) }}
  {%- endif -%}
  {%- set out = [] -%}
  {%- set seen = [] -%}
  {%- for seg in given -%}
    {%- set name = (seg.get('name') or '') | string | trim if seg is mapping else '' -%}
    {%- set where = (seg.get('where') or '') | string | trim if seg is mapping else '' -%}
    {%- if not modules.re.match('^[a-z][a-z0-9_]{0,62}$', name) -%}
      {{ exceptions.raise_compiler_error("segment definition #" ~ loop.index ~ ": name '" ~ name ~ "' is not a lower-case identifier") }}
    {%- endif -%}
    {%- if name in seen -%}
      {{ exceptions.raise_compiler_error("segment '" ~ name ~ "' is defined twice") }}
    {%- endif -%}
    {%- if where == '' or ';' in where or '--' in where or '/*' in where -%}
      {{ exceptions.raise_compiler_error("segment '" ~ name ~ "': 'where' must be one SQL expression without ';' or comments") }}
    {%- endif -%}
    {#- Second line of defence (the first: c360/marketing/segment_rules.py checks every rule against an allow-list and renders
        what arrives here). A hand run can pass any text, so refuse, outside quoted literals, the words a predicate
        needs to leave its parentheses (a query, a set operation, `* replace`) and parentheses that do not balance. -#}
    {%- set bare = modules.re.sub("'([^']|'')*'", "''", where) -%}
    {%- set keyword = modules.re.search('(?i)\\b(select|union|intersect|except|from|with|join|values|table|pivot|unpivot|replace|exclude)\\b', bare) -%}
    {%- if keyword is not none -%}
      {{ exceptions.raise_compiler_error("segment '" ~ name ~ "': 'where' contains '" ~ keyword.group(0) ~ "'; a segment rule is one condition over the segment input columns (docs/exports.md#segment-rules)") }}
    {%- endif -%}
    {%- set depth = namespace(n=0, low=0) -%}
    {%- for ch in bare -%}
      {%- if ch == '(' -%}{%- set depth.n = depth.n + 1 -%}{%- elif ch == ')' -%}{%- set depth.n = depth.n - 1 -%}{%- endif -%}
      {%- if depth.n < depth.low -%}{%- set depth.low = depth.n -%}{%- endif -%}
    {%- endfor -%}
    {%- if depth.n != 0 or depth.low < 0 -%}
      {{ exceptions.raise_compiler_error("segment '" ~ name ~ "': 'where' has unbalanced parentheses") }}
    {%- endif -%}
    {%- do seen.append(name) -%}
    {%- do out.append({'name': name, 'where': where, 'needs_scores': segment_needs_scores(where)}) -%}
  {%- endfor -%}
  {{- return(out) -}}
{% endmacro %}


{% macro segment_score_columns() %}
  {#- The score columns a predicate may use besides the feature snapshot's (c360/marketing/segment_rules.py SCORE_COLUMNS). -#}
  {{- return(['churn_probability', 'churn_decile', 'p_alive', 'expected_purchases', 'predicted_value_eur', 'value_decile']) -}}
{% endmacro %}


{% macro segment_needs_scores(where) %}
  {#- A predicate that names a score column can only be evaluated for customers scored on the date. -#}
  {%- set pattern = '\\b(' ~ segment_score_columns() | join('|') ~ ')\\b' -%}
  {{- return(modules.re.search(pattern, where | lower) is not none) -}}
{% endmacro %}
