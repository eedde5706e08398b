"""segments.yml: the shipped file is valid, mistakes get clear errors, and the `c360 segments` command works."""

from __future__ import annotations

import argparse
import json
import re
from datetime import date
from pathlib import Path

import duckdb
import pytest

from c360 import segments as seg_mod
from c360.segments import (
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
    parser = argparse.ArgumentParser()
    seg_mod.add_arguments(parser)
    code = seg_mod.run(parser.parse_args(argv))
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
    # Export through the CLI: fails clearly here (no pii.customer_contacts in this warehouse).
    assert _cli(["--file", str(path), "export", "--date", "2025-06-02"], capsys)[0] == 1
    assert _cli(["--file", str(path), "export", "--segment", "nope"], capsys)[0] == 1
