"""segments.yml: the shipped file is valid, mistakes get clear errors, and the `c360 segments` command works."""

from __future__ import annotations

import argparse
import json
import re
from datetime import date
from pathlib import Path

import duckdb
import pytest

from c360.marketing import segments as seg_mod
from c360.marketing.segments import (
    SegmentConfigError,
    check_predicates,
    load_segments,
    parse_segments,
    segment_definitions,
    segment_sizes,
    segments_dbt_var,
)

GOOD = {"name": "vip", "description": "d", "where": "value_decile = 10", "required_consent": "none",
        "destination": "crm"}


def errors_for(*segments, **top) -> str:
    with pytest.raises(SegmentConfigError) as exc:
        parse_segments({"segments": list(segments), **top})
    return str(exc.value)


def test_shipped_segments_file_is_valid():
    defs = segment_definitions()
    names = [d["name"] for d in defs]
    for required in ("high_value_at_risk", "win_back", "vip", "new_customer_nurture", "cart_abandoners"):
        assert required in names
    affinity = [n for n in names if n.startswith("affinity_")]
    assert "affinity_home_and_kitchen" in affinity and len(affinity) >= 3
    hk = next(d for d in defs if d["name"] == "affinity_home_and_kitchen")
    # the warehouse's form of the category (lower case), or the segment would never match anyone
    assert "favourite_category = 'home and kitchen'" in hk["where"]
    assert all(set(d) == {"name", "description", "where", "required_consent", "destination", "columns"} for d in defs)
    var = segments_dbt_var()
    # dbt receives the SQL rendered from the checked rule, not the text as written
    assert json.loads(json.dumps(var))["segments"][0] == {
        "name": "high_value_at_risk", "where": "value_decile >= 8 AND churn_decile >= 8",
        "required_consent": "marketing", "consent_column": "marketing_consent"}


def test_defaults_and_per_category_template():
    segs = parse_segments({"segments": [GOOD], "per_category": {
        "categories": ["Toys and Baby", "O'Neill"],
        "template": {**GOOD, "name": "cat_{slug}", "where": "favourite_category = {category_sql}",
                     "description": "likes {category}"}}})
    assert [s.name for s in segs] == ["vip", "cat_toys_and_baby", "cat_o_neill"]
    assert segs[0].columns == seg_mod.DEFAULT_COLUMNS
    assert segs[2].where == "favourite_category = 'o''neill'" and segs[2].description == "likes O'Neill"


@pytest.mark.parametrize("change, expected", [
    ({"colour": "red"}, "segment 'vip' (segments[0]): unknown field 'colour'"),
    ({"name": "VIP list"}, "field 'name' 'VIP list' is not an identifier"),
    ({"where": "  "}, "segment 'vip' (segments[0]): field 'where' is missing or empty"),
    ({"where": "value_decile >= and"}, "field 'where' 'value_decile >= and': 'and' is refused: it is not valid SQL"),
    ({"where": "1=1; drop table x"}, "contains a ';'"),
    ({"where": "x > 1 -- note"}, "'--' comment"),
    ({"required_consent": "maybe"}, "field 'required_consent' is 'maybe'; expected one of: marketing, none"),
    ({"destination": "fax"}, "field 'destination' is 'fax'; expected one of: crm, ads, analytics"),
    ({"columns": ["email_hash"]}, "field 'columns' has unknown column 'email_hash'"),
    ({"columns": ["rec_1", "rec_1"]}, "field 'columns' lists rec_1 more than once"),
    ({"description": None}, "field 'description' is missing or empty"),
    ({"where": 5}, "field 'where' must be text"),
])
def test_validation_errors_name_segment_and_field(change, expected):
    assert expected in errors_for({**GOOD, **change})


def test_every_problem_is_reported_at_once():
    msg = errors_for({**GOOD, "destination": "fax"}, {**GOOD, "name": "other", "required_consent": "x"}, GOOD)
    assert "'fax'" in msg and "segment 'other' (segments[1]): field 'required_consent'" in msg
    assert "segment 'vip': the name is defined 2 times" in msg


def test_top_level_and_template_errors():
    assert "unknown top-level key 'segmnts'" in errors_for(GOOD, segmnts=[])
    assert "unknown placeholder {categ}" in errors_for(GOOD, per_category={
        "categories": ["A"], "template": {**GOOD, "name": "c_{categ}"}})
    assert "'categories' must be a non-empty list" in errors_for(GOOD, per_category={"categories": [], "template": GOOD})
    with pytest.raises(SegmentConfigError, match="no segments defined"):
        parse_segments({"segments": []})


def test_yaml_errors_name_the_file(tmp_path):
    bad = tmp_path / "segments.yml"
    bad.write_text("segments:\n  - name: [unclosed\n")
    with pytest.raises(SegmentConfigError, match=f"{bad}: not valid YAML"):
        load_segments(bad)
    with pytest.raises(SegmentConfigError, match="not found"):
        load_segments(tmp_path / "missing.yml")


SEGMENTS = parse_segments({"segments": [
    {**GOOD, "name": "loyal", "required_consent": "marketing"}, GOOD]})


@pytest.fixture
def warehouse(c360_env):
    c360_env.warehouse_path.parent.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(str(c360_env.warehouse_path))
    con.execute("""
        CREATE SCHEMA marts;
        CREATE TABLE marts.segment_members (as_of_date DATE, segment VARCHAR, customer_id VARCHAR,
                                            marketing_consent BOOLEAN);
        INSERT INTO marts.segment_members VALUES
          ('2025-06-01', 'loyal', 'a', true), ('2025-06-01', 'loyal', 'b', false),
          ('2025-06-02', 'loyal', 'b', false), ('2025-06-02', 'loyal', 'c', true), ('2025-06-02', 'loyal', 'd', true),
          ('2025-06-02', 'vip', 'a', false);
        -- what dbt's segment_changes holds for those members (the counts are read from it, not derived again)
        CREATE TABLE marts.segment_changes (as_of_date DATE, segment VARCHAR, customer_id VARCHAR, change VARCHAR);
        INSERT INTO marts.segment_changes VALUES
          ('2025-06-01', 'loyal', 'a', 'entered'), ('2025-06-01', 'loyal', 'b', 'entered'),
          ('2025-06-02', 'loyal', 'c', 'entered'), ('2025-06-02', 'loyal', 'd', 'entered'),
          ('2025-06-02', 'loyal', 'a', 'exited'), ('2025-06-02', 'vip', 'a', 'entered');
        CREATE SCHEMA feature_store;
        CREATE TABLE feature_store.customer_features (customer_id VARCHAR, as_of_date DATE, orders_count INTEGER);
    """)
    con.close()
    return c360_env


def test_sizes_and_deltas(warehouse):
    con = duckdb.connect(str(warehouse.warehouse_path), read_only=True)
    sizes = {r["segment"]: r for r in segment_sizes(con, date(2025, 6, 2), SEGMENTS)}
    assert seg_mod.latest_segment_date(con) == date(2025, 6, 2)
    con.close()
    assert sizes["loyal"] == {"segment": "loyal", "members": 3, "with_marketing_consent": 2, "exportable": 2,
                              "required_consent": "marketing", "destination": "crm", "entered": 2, "exited": 1}
    assert sizes["vip"]["exportable"] == 1 and sizes["vip"]["entered"] == 1


def test_check_predicates_against_the_warehouse(warehouse):
    """The rule language refuses unknown columns and non-conditions when the file is read; binding against the
    warehouse still finds what only the data types tell (and a warehouse older than the feature contract)."""
    con = duckdb.connect(str(warehouse.warehouse_path), read_only=True)
    # value_decile is a score: the check adds the score columns the feature table lacks.
    rules = parse_segments({"segments": [{**GOOD, "where": "value_decile = 10 and orders_count > 2"},
                                         {**GOOD, "name": "x", "where": "lower(orders_count) = 'a'"},
                                         {**GOOD, "name": "y", "where": "days_since_last_order < 30"}]})
    problems = check_predicates(con, rules)
    con.close()
    assert len(problems) == 2
    assert problems[0].startswith("segment 'x': field 'where' fails against feature_store.customer_features")
    assert "lower(INTEGER)" in problems[0]  # a type error: only binding finds it
    # this warehouse's feature table has no days_since_last_order column (yet)
    assert problems[1].startswith("segment 'y'") and "days_since_last_order" in problems[1]


def test_shipped_predicates_use_documented_feature_columns():
    """Every predicate in segments.yml binds against the columns docs/feature_store.md promises (plus scores)."""
    doc = (Path(__file__).resolve().parent.parent / "docs" / "feature_store.md").read_text()
    columns = {}
    for line in doc.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 2 and cells[0].startswith("`") and re.fullmatch(r"[A-Z]+(\(\d+, ?\d+\))?", cells[1]):
            for name in re.findall(r"`([a-z0-9_]+)`", cells[0]):
                columns.setdefault(name, cells[1])
    assert {"days_since_last_order", "favourite_category_share", "cart_adds_7d"} <= set(columns)
    con = duckdb.connect()
    con.execute("CREATE SCHEMA feature_store")
    con.execute("CREATE TABLE feature_store.customer_features ("
                + ", ".join(f"{n} {t}" for n, t in columns.items()) + ")")
    assert check_predicates(con, load_segments()) == []


def _cli(argv, capsys) -> tuple[int, str]:
    """`c360 segments ...`: its command module adds `export` to c360.marketing.segments' actions (c360/cli/__init__.py)."""
    from c360.cli import segments as segments_cli

    parser = argparse.ArgumentParser()
    segments_cli.add_arguments(parser)
    code = segments_cli.run(parser.parse_args(argv))
    return code, capsys.readouterr().out


def test_cli(warehouse, tmp_path, capsys):
    import yaml

    path = tmp_path / "segments.yml"
    path.write_text(yaml.safe_dump({"segments": [s.as_dict() for s in SEGMENTS]}))
    code, out = _cli(["--file", str(path), "list"], capsys)
    assert code == 0 and "loyal" in out and "value_decile = 10" in out
    code, out = _cli(["--file", str(path), "show", "vip"], capsys)
    assert code == 0 and json.loads(out)["destination"] == "crm"
    assert _cli(["--file", str(path), "show", "nope"], capsys)[0] == 1
    code, out = _cli(["--file", str(path), "sizes", "--json"], capsys)
    assert code == 0 and json.loads(out)["as_of_date"] == "2025-06-02"
    code, out = _cli(["--file", str(path), "deltas", "--date", "2025-06-02"], capsys)
    assert code == 0 and "loyal" in out
    code, out = _cli(["--file", str(path), "check"], capsys)
    assert code == 0 and "0 problem(s)" in out
    code, out = _cli(["--file", str(path), "check", "--table", "marts.nope"], capsys)
    assert code == 1 and "does not exist yet" in out
    # Export through the CLI: fails clearly here (no pii.segment_export_rows in this warehouse).
    assert _cli(["--file", str(path), "export", "--date", "2025-06-02"], capsys)[0] == 1
    assert _cli(["--file", str(path), "export", "--segment", "nope"], capsys)[0] == 1


# ------------------------------------------------------------------------------------ the rule language


def rule_error(where: str) -> str:
    return errors_for({**GOOD, "where": where})


@pytest.mark.parametrize("where, rendered", [
    ("value_decile >= 8 and churn_decile >= 8", "value_decile >= 8 AND churn_decile >= 8"),
    ("not has_tracking or country in ('DE', 'AT')", "NOT has_tracking OR country IN ('DE', 'AT')"),
    ("orders_count not between 2 and 5", "NOT orders_count BETWEEN 2 AND 5"),
    ("days_since_last_visit is not null and acquisition_channel ilike 'paid%'",
     "NOT days_since_last_visit IS NULL AND acquisition_channel ILIKE 'paid%'"),
    ("(net_revenue_eur - returned_revenue_eur) / 2 > -10.5 and orders_count % 2 = 0",
     "(net_revenue_eur - returned_revenue_eur) / 2 > -10.5 AND orders_count % 2 = 0"),
    ("ifnull(p_alive, 0) >= 0.1", "COALESCE(p_alive, 0) >= 0.1"),
    ("round(return_rate, 2) <= greatest(0.1, least(abs(-0.2), 0.3))",
     "ROUND(return_rate, 2) <= GREATEST(0.1, LEAST(ABS(-0.2), 0.3))"),
    ("lower(country) = 'de' and length(upper(rfm_segment)) > 3", "LOWER(country) = 'de' AND LENGTH(UPPER(rfm_segment)) > 3"),
    ("signup_date >= date '2024-01-31' and last_order_date > as_of_date - interval 30 day",
     "signup_date >= CAST('2024-01-31' AS DATE) AND last_order_date > as_of_date - INTERVAL '30' DAY"),
    ("date_diff('day', signup_date, as_of_date) > 365", "DATE_DIFF('DAY', signup_date, as_of_date) > 365"),
    ('"Orders_Count" >= 2 and has_profile is true', "orders_count >= 2 AND has_profile IS TRUE"),
    ("favourite_category = 'o''neill'", "favourite_category = 'o''neill'"),
])
def test_rules_in_the_language_are_rendered_from_their_tree(where, rendered, tmp_path):
    import yaml

    seg = parse_segments({"segments": [{**GOOD, "where": where}]})[0]
    assert seg.where == where and seg.where_sql == rendered
    path = tmp_path / "segments.yml"
    path.write_text(yaml.safe_dump({"segments": [{**GOOD, "where": where}]}))
    assert segments_dbt_var(path)["segments"][0]["where"] == rendered  # what dbt receives
    # rendering is stable: the rendered SQL is itself a valid rule that renders to itself
    assert parse_segments({"segments": [{**GOOD, "where": rendered}]})[0].where_sql == rendered


@pytest.mark.parametrize("where, offending, why", [
    ("orders_count in (select 1)", "'select' is refused", "subqueries"),
    ("exists (select * from raw.customers)", "'select' is refused", "subqueries"),
    ("select 1", "'select' is refused", "subqueries"),
    ("orders_count > 1 union select 1", "'union' is refused", "set operations"),
    ("*", "'*' is refused", "name the columns"),
    ("orders_count > 1 -- all of them", "'--' is refused", "comment"),
    ("orders_count > 1 /* note */", "'/*' is refused", "comment"),
    ("orders_count > 1; drop table marts.segment_members", "';' is refused", "statement separator"),
    ("(orders_count > 1", "'(orders_count > 1' is refused", "unbalanced parentheses: 1 '(' never closed"),
    ("orders_count > 1)", "is refused", "the ')' at character 17 closes nothing"),
    ("order_count > 1", "'order_count' is refused", "unknown column"),
    ("customer_features.orders_count > 1", "'customer_features.orders_count' is refused", "table-qualified"),
    ("read_csv('/etc/passwd') is not null", "READ_CSV('/etc/passwd')", "function read_csv() is not allowed"),
    ("getenv('HOME') = '/root'", "GETENV('HOME')", "function getenv() is not allowed"),
    ("orders_count := 1", "'orders_count := 1' is refused", "assignments are not allowed"),
    ("orders_count::varchar = '1'", "'CAST(orders_count AS", "casts are not allowed"),
    ("orders_count in (orders_count)", "'orders_count' is refused", "list of literals"),
    ("orders_count", "'orders_count' is refused", "not a true/false condition"),
    ("marketing_consent or orders_count > 0", "'marketing_consent' is refused", "required_consent"),
    ("customer_id = 'C1'", "'customer_id' is refused", "hand-picked"),
    ("email like '%@example.com'", "'email' is refused", "contact data"),
    ("orders_count > $1", "'$1' is refused", "parameters"),
    # sqlglot would drop the extra arguments silently: the rule must run as written or not at all
    ("round(return_rate, 2, 3) > 0.5", "'round(return_rate, 2, 3)' is refused", "at most 2 arguments"),
    ("date_diff('day', signup_date, as_of_date, 'UTC') > 1", "is refused", "date_diff() takes at most 3"),
    ("signup_date > timestamp(3) '2025-01-01'", "is refused", "casts are not allowed"),
    ("country like 'a!%' escape '!'", "is refused", "not part of the rule language"),
    ("case when has_profile then true end", "is refused", "not allowed"),
])
def test_rules_outside_the_language_are_refused_with_the_vocabulary(where, offending, why):
    msg = rule_error(where)
    assert f"segment 'vip' (segments[0]): field 'where' {where!r}: " in msg
    assert offending in msg and why in msg
    assert "functions coalesce, abs, round" in msg  # the allowed vocabulary
    if why == "unknown column":
        assert "Columns: " in msg and "orders_count" in msg and "value_decile" in msg


def test_input_columns_are_the_feature_contract_and_scores_minus_protected():
    """One list: the enforced dbt contract of customer_features (docs/feature_store.md is tested against it)."""
    import yaml

    from c360.marketing.segment_rules import PROTECTED_COLUMNS, SCORE_COLUMNS, contract_file, input_columns

    spec = yaml.safe_load(contract_file().read_text())
    contract = {c["name"] for m in spec["models"] if m["name"] == "customer_features" for c in m["columns"]}
    assert set(input_columns()) == (contract | set(SCORE_COLUMNS)) - set(PROTECTED_COLUMNS)
    assert {"customer_id", "marketing_consent"} <= contract and "email" not in input_columns()
    assert input_columns()["has_tracking"] == "boolean"


def _random_inputs(con, rows: int = 3000) -> None:
    """A table with every input column filled with varied values (a fifth null) to evaluate rules on."""
    from c360.marketing.segment_rules import input_columns

    categories = ["fashion", "home and kitchen", "electronics", "beauty", "sports and outdoors", "unknown"]
    exprs = []
    for i, (col, kind) in enumerate(sorted(input_columns().items())):
        r = f"hash(i * 31 + {i})"
        value = {
            "boolean": f"({r} % 2 = 0)",
            "date": f"DATE '2024-01-01' + CAST({r} % 700 AS INTEGER)",
            "string": f"list_extract({categories!r}, CAST({r} % {len(categories)} AS INTEGER) + 1)",
        }.get(kind.split("(")[0])
        if value is None:
            if col.endswith(("_share", "probability", "p_alive", "rate")) or col.startswith("share_"):
                value = f"({r} % 1000) / 1000.0"
            elif col.endswith("decile"):
                value = f"CAST({r} % 10 + 1 AS INTEGER)"
            elif kind == "integer" and "days" not in col:  # counts: small, so that e.g. orders_count = 1 occurs
                value = f"CAST({r} % 6 AS INTEGER)"
            else:
                value = f"CAST({r} % 400 AS {kind.upper() or 'DOUBLE'})"
        exprs.append(f"CASE WHEN hash(i * 7 + {i}) % 5 = 0 THEN NULL ELSE {value} END AS {col}")
    con.execute(f"CREATE TABLE inputs AS SELECT 'C' || i AS customer_id, {', '.join(exprs)} FROM range({rows}) t(i)")


def test_shipped_rules_select_the_same_customers_as_written_and_rendered():
    """Every rule of segments.yml (per_category ones included) selects exactly the same customers with the rendered
    SQL as with the text as written (which is what dbt ran before): rendering changes nothing for valid rules."""
    con = duckdb.connect()
    _random_inputs(con)
    segments = load_segments()
    assert len(segments) >= 10
    for s in segments:
        as_written = con.execute(f"SELECT customer_id FROM inputs WHERE ({s.where}) ORDER BY 1").fetchall()
        rendered = con.execute(f"SELECT customer_id FROM inputs WHERE ({s.where_sql}) ORDER BY 1").fetchall()
        assert as_written == rendered, s.name
        total = con.execute("SELECT count(*) FROM inputs").fetchone()[0]
        assert 0 < len(rendered) < total, f"{s.name}: the data does not exercise the rule"
