{#
  identity_anchors(nodes, edges): the connected components of the identity graph. nodes: customer_id,
  first_seen_date; edges: from_id, to_id (both directions). One row per node: customer_id, anchor_customer_id (the
  component's earliest-seen node, ties by id) and component_size.
#}
{% macro identity_anchors(nodes, edges) %}
  {{- return(adapter.dispatch('identity_anchors', 'c360')(nodes, edges)) -}}
{% endmacro %}

{#- DuckDB: a recursive walk; UNION (not UNION ALL) drops rows already reached, so it ends on the graph's cycles -#}
{% macro default__identity_anchors(nodes, edges) %}
    select
        reach.start_id                                                          as customer_id,
        min_by(reach.reached_id, (nodes.first_seen_date, reach.reached_id))    as anchor_customer_id,
        count(*)                                                                as component_size
    from (
        with recursive walk(start_id, reached_id) as (
            select customer_id, customer_id from {{ nodes }}
            union
            select walk.start_id, edges.to_id
            from walk
            inner join {{ edges }} as edges on edges.from_id = walk.reached_id
        )
        select * from walk
    ) as reach
    inner join {{ nodes }} as nodes on nodes.customer_id = reach.reached_id
    group by reach.start_id
{% endmacro %}

{#
  Spark SQL's recursive CTEs take only UNION ALL, which never ends on a cycle. Instead each node takes the smallest
  (first_seen_date, customer_id) among itself and its neighbours, `steps` times over: after k steps every node holds
  the smallest label within k edges, so the labels are the components' anchors once k reaches the longest shortest
  path in a component. The query then checks one more step changes nothing, and fails the build if it would (a
  component wider than `steps` edges: raise C360_IDENTITY_SPARK_STEPS, the dbt var identity_spark_steps).
#}
{% macro spark__identity_anchors(nodes, edges) %}
  {%- set steps = int_var('identity_spark_steps') %}
    select
        n.customer_id,
        labels.label.customer_id                                                as anchor_customer_id,
        count(*) over (partition by labels.label.customer_id)                   as component_size
    from {{ nodes }} as n
    inner join (
        with label_0 as (
            select customer_id, struct(first_seen_date, customer_id) as label from {{ nodes }}
        ),
        -- every edge plus a loop on each node: one join per step (Spark inlines CTEs, so a step that read the
        -- previous one twice would double the plan each step)
        reach_1 as (
            select from_id, to_id from {{ edges }}
            union all
            select customer_id, customer_id from {{ nodes }}
        ),
        {%- for k in range(1, steps + 2) %}
        label_{{ k }} as (
            select e.from_id as customer_id, min(m.label) as label
            from reach_1 as e
            inner join label_{{ k - 1 }} as m on m.customer_id = e.to_id
            group by e.from_id
        ){{ ',' if not loop.last }}
        {%- endfor %}
        select last.customer_id, last.label
        from label_{{ steps }} as last
        inner join label_{{ steps + 1 }} as next on next.customer_id = last.customer_id
        where case when last.label = next.label then true
                   else raise_error('int_identity_components: an identity component is wider than {{ steps }} edges; '
                                    || 'set C360_IDENTITY_SPARK_STEPS higher (customer ' || last.customer_id || ')')
              end
    ) as labels on labels.customer_id = n.customer_id
{% endmacro %}


{#
  person_join_dates(components, edges): for each customer id of a person with more than one, the first day the
  links known by then connected it to the person's anchor (customer_id, joined_date). Over all paths from the
  anchor, the earliest day on which every link of the path was known: the minimum over paths of the path's latest
  linked_date. components: int_identity_components; edges: from_id, to_id, linked_date (both directions).
#}
{% macro person_join_dates(components, edges) %}
  {{- return(adapter.dispatch('person_join_dates', 'c360')(components, edges)) -}}
{% endmacro %}

{% macro default__person_join_dates(components, edges) %}
    -- (anchor, reached, day the path was complete); UNION stops when no new triple appears
    with recursive walk(anchor_id, reached_id, path_date) as (
        select customer_id, customer_id, first_seen_date from {{ components }} where is_anchor and component_size > 1
        union
        select walk.anchor_id, edges.to_id, greatest(walk.path_date, edges.linked_date)
        from walk
        inner join {{ edges }} as edges on edges.from_id = walk.reached_id
    )
    select reached_id as customer_id, min(path_date) as joined_date from walk group by reached_id
{% endmacro %}

{#
  Spark SQL: the same minimum, relaxed `steps` times over as in spark__identity_anchors (a customer id belongs to
  one person, so one date per id suffices), and checked to be final by one more step.
#}
{% macro spark__person_join_dates(components, edges) %}
  {%- set steps = int_var('identity_spark_steps') %}
    with joined_0 as (
        select customer_id, first_seen_date as joined_date
        from {{ components }} where is_anchor and component_size > 1
    ),
    -- every edge plus a loop on each id (no date: greatest() skips it), so each step reads the previous once
    steps_edges as (
        select from_id, to_id, linked_date from {{ edges }}
        union all
        select customer_id, customer_id, cast(null as date) from {{ components }}
    ),
    {%- for k in range(1, steps + 2) %}
    joined_{{ k }} as (
        select e.to_id as customer_id, min(greatest(j.joined_date, e.linked_date)) as joined_date
        from steps_edges as e
        inner join joined_{{ k - 1 }} as j on j.customer_id = e.from_id
        group by e.to_id
    ),
    {%- endfor %}
    checked as (
        select last.customer_id, last.joined_date
        from joined_{{ steps }} as last
        full outer join joined_{{ steps + 1 }} as next on next.customer_id = last.customer_id
        where case when last.joined_date = next.joined_date then true
                   else raise_error('person_members: a person is wider than {{ steps }} links; '
                                    || 'set C360_IDENTITY_SPARK_STEPS higher')
              end
    )
    select customer_id, joined_date from checked
{% endmacro %}
