{#
  What a night rebuilds of marts.fct_sessions (incremental per cookie-day, #16): the cookie-days with a new state in
  the run's window (new or late events), and every day of a cookie with a new identity link in the window (a login
  or purchase re-attributes the cookie's earlier anonymous sessions). A session's customer depends only on its own
  cookie's links, so the other days of a cookie keep their rows.
#}
{% macro fct_sessions_changed_days() %}
    {#- lookback_start() asks the warehouse for the table's latest known_date (catch-up): once, not per use -#}
    {%- set window_start = lookback_start() %}
    select anonymous_id, session_date
    from {{ ref('int_session_states') }}
    where known_date between {{ window_start }} and {{ run_date() }}
    union
    select anonymous_id, session_date
    from {{ ref('int_session_states') }}
    where anonymous_id in (
        select anonymous_id from {{ ref('int_identity_links') }}
        where known_date between {{ window_start }} and {{ run_date() }})
{% endmacro %}


{% macro fct_sessions_rebuilt_days() -%}
    {#- the replace_where predicate (macros/strategies/replace_where.sql): the stored rows of the days being rebuilt
        (EXISTS: a semi-join on both warehouses) -#}
    exists (select 1 from ({{ fct_sessions_changed_days() }}) as rebuilt
            where rebuilt.anonymous_id = {{ this.identifier }}.anonymous_id
              and rebuilt.session_date = {{ this.identifier }}.session_date)
{%- endmacro %}
