"""Hostile segment rules (issue #13, item 1): segments.yml is edited by marketing, so a `where` must not be able to
read files, reach other tables or change consent. Each hostile rule is refused when the file is read, with the
segment, the offending text and the allowed vocabulary; a bad file stops the night before any dbt command runs, and
the warehouse (marts.segment_members above all) is left exactly as it was.
"""

from __future__ import annotations

import hashlib
from datetime import date, datetime

import duckdb
import pytest
import yaml

from c360.marketing import segments as seg_mod
from c360.marketing.segments import SegmentConfigError, load_segments, parse_segments
from c360.pipeline import transform

pytestmark = pytest.mark.reliability

# The rule found by the hostile test: it closed the predicate's parenthesis, appended its own rows with consent
# forced to true, and reopened a parenthesis so the rest of dbt's SQL still parsed.
CONSENT_OVERRIDE = ("value_decile >= 8 and churn_decile >= 8) union all select 'high_value_at_risk' as segment, "
                    "* replace (true as marketing_consent) from candidates where (true")
READ_FILE = "read_text('/etc/passwd') is not null"

HOSTILE = {
    "consent_override": (CONSENT_OVERRIDE, "'union' is refused"),
    "read_file": (READ_FILE, "function read_text() is not allowed"),
    # the exact strings of the issue: a bare file-reading call is a function outside the list, not a syntax error
    "read_text_bare": ("read_text('/etc/passwd')", "function read_text() is not allowed"),
    "read_csv_bare": ("read_csv('/etc/passwd')", "function read_csv() is not allowed"),
    "read_csv": ("exists (select 1 from read_csv('/etc/passwd'))", "'select' is refused"),
    "glob": ("length(glob('~/.aws/credentials')) > 0", "function glob() is not allowed"),
    "subquery": ("orders_count > (select max(orders_count) from feature_store.customer_features)",
                 "'select' is refused"),
    "select": ("select true", "'select' is refused"),
    "union": ("true union all select * from pii.customer_contacts", "'union' is refused"),
    "star": ("* replace (true as marketing_consent)", "'*' is refused"),
    "line_comment": ("orders_count > 0 -- and marketing_consent", "'--' is refused"),
    "block_comment": ("orders_count > 0 /* ) union select 1 ( */", "'/*' is refused"),
    "semicolon": ("true; update marts.segment_members set marketing_consent = true", "';' is refused"),
    "unbalanced_close": ("orders_count > 0) or (true", "the ')' at character 17 closes nothing"),
    "unbalanced_open": ("(orders_count > 0", "1 '(' never closed"),
    "unknown_column": ("is_scored and run_id is not null", "'is_scored' is refused: unknown column"),
    "qualified_column": ("candidates.value_decile >= 8", "'candidates.value_decile' is refused: table-qualified"),
    "other_table": ("pii.customer_contacts.email is not null", "table-qualified"),
    "file_function": ("read_blob('/etc/shadow') is not null", "function read_blob() is not allowed"),
    "env_function": ("getenv('AWS_SECRET_ACCESS_KEY') is not null", "function getenv() is not allowed"),
    "assignment": ("marketing_consent := true", "is refused"),
    "consent_column": ("marketing_consent = true", "'marketing_consent' is refused"),
    "id_column": ("customer_id in ('C1', 'C2')", "'customer_id' is refused"),
    "email_column": ("email is not null", "'email' is refused"),
}


def segment(where: str, name: str = "high_value_at_risk") -> dict:
    return {"name": name, "description": "d", "where": where, "required_consent": "marketing", "destination": "crm"}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_rule_is_refused_naming_segment_text_and_vocabulary(case):
    where, expected = HOSTILE[case]
    with pytest.raises(SegmentConfigError) as exc:
        parse_segments({"segments": [segment("value_decile = 10", "vip"), segment(where)]})
    msg = str(exc.value)
    assert f"segment 'high_value_at_risk' (segments[1]): field 'where' {where!r}: " in msg
    assert expected in msg
    assert "functions coalesce, abs, round" in msg and "in (a list of literals)" in msg
    assert "'vip'" not in msg  # the good segment is not blamed


def test_hostile_rule_in_the_per_category_template_is_refused():
    with pytest.raises(SegmentConfigError, match=r"segment 'affinity_fashion' \(per_category\['Fashion'\]\)"
                                                 r".*function read_text\(\) is not allowed"):
        parse_segments({"segments": [segment("value_decile = 10", "vip")], "per_category": {
            "categories": ["Fashion"],
            "template": {**segment("favourite_category = {category_sql} or " + READ_FILE), "name": "affinity_{slug}"}}})


def test_a_category_name_cannot_inject_sql():
    """{category_sql} is quoted by the template: a hostile category name stays a text literal."""
    segs = parse_segments({"segments": [segment("value_decile = 10", "vip")], "per_category": {
        "categories": ["x') or (true"],
        "template": {**segment("favourite_category = {category_sql}"), "name": "affinity_{slug}"}}})
    assert segs[1].where_sql == "favourite_category = 'x'') or (true'"


@pytest.mark.parametrize("argv", [["list"], ["check"], ["show", "high_value_at_risk"], ["vars"]])
def test_cli_refuses_the_hostile_file(argv, tmp_path, capsys, caplog):
    import argparse

    bad = tmp_path / "segments.yml"
    bad.write_text(yaml.safe_dump({"segments": [segment(CONSENT_OVERRIDE)]}))
    parser = argparse.ArgumentParser()
    from c360.cli import segments as segments_cli

    segments_cli.add_arguments(parser)
    assert segments_cli.run(parser.parse_args(["--file", str(bad), *argv])) == 1
    assert "'union' is refused" in caplog.text and "union all" not in capsys.readouterr().out


D = date(2025, 6, 2)


@pytest.fixture
def night(c360_env, tmp_path, monkeypatch):
    """A warehouse holding last night's segment members, segments.yml replaced by the hostile file, and dbt's
    runner replaced by one that records any invocation (none may happen)."""
    c360_env.warehouse_path.parent.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(str(c360_env.warehouse_path))
    con.execute("""
        CREATE SCHEMA marts;
        CREATE TABLE marts.segment_members (as_of_date DATE, segment VARCHAR, customer_id VARCHAR,
                                            marketing_consent BOOLEAN);
        INSERT INTO marts.segment_members VALUES
          ('2025-06-01', 'high_value_at_risk', 'C1', true), ('2025-06-01', 'high_value_at_risk', 'C2', false),
          ('2025-06-01', 'vip', 'C2', false);
    """)
    con.close()
    bad = tmp_path / "segments.yml"
    bad.write_text(yaml.safe_dump({"segments": [segment("value_decile = 10", "vip"), segment(CONSENT_OVERRIDE),
                                                segment(READ_FILE, "peek")]}))
    monkeypatch.setattr(seg_mod, "DEFAULT_SEGMENTS_FILE", bad)  # what the nightly reads

    import dbt.cli.main

    calls = []

    class RecordingRunner:
        def invoke(self, args):
            calls.append(args)
            raise AssertionError("dbt ran although segments.yml is invalid")

    monkeypatch.setattr(dbt.cli.main, "dbtRunner", RecordingRunner)
    return {"settings": c360_env, "calls": calls}


def warehouse_state(settings) -> tuple[str, list[tuple]]:
    digest = hashlib.sha256(settings.warehouse_path.read_bytes()).hexdigest()
    con = duckdb.connect(str(settings.warehouse_path), read_only=True)
    rows = con.execute("SELECT * FROM marts.segment_members ORDER BY ALL").fetchall()
    con.close()
    return digest, rows


@pytest.mark.parametrize("step", ["dbt_build_task", "dbt_build_scores_task", "build", "build_scores"])
def test_a_bad_segments_file_stops_the_night_before_dbt_and_changes_nothing(night, step):
    from airflow.sdk.exceptions import AirflowFailException

    from c360.pipeline import tasks

    before = warehouse_state(night["settings"])
    assert len(before[1]) == 3
    run = {
        # the Airflow task of c360_transform, as `c360 nightly` runs it
        "dbt_build_task": lambda: tasks.dbt_build({"logical_date": datetime(D.year, D.month, D.day)}),
        # c360_score's task: the check comes before raw.scores is reloaded
        "dbt_build_scores_task": lambda: tasks.dbt_build_scores({"logical_date": datetime(D.year, D.month, D.day)}),
        "build": lambda: transform.build(D, night["settings"]),
        "build_scores": lambda: transform.build_scores(D, night["settings"]),
    }[step]
    with pytest.raises((SegmentConfigError, AirflowFailException)) as exc:
        run()
    if step.endswith("_task"):  # a bad file is not retried: the task fails for good, with the config error as cause
        assert isinstance(exc.value, AirflowFailException) and isinstance(exc.value.__cause__, SegmentConfigError)
    msg = str(exc.value)
    assert "segment 'high_value_at_risk' (segments[1])" in msg and "'union' is refused" in msg
    assert "segment 'peek' (segments[2])" in msg and "function read_text() is not allowed" in msg
    assert night["calls"] == []  # dbt never started
    assert warehouse_state(night["settings"]) == before  # not one byte of the warehouse changed


def test_the_shipped_file_renders_what_dbt_receives():
    """The repository's segments.yml passes, and dbt receives the rendered SQL (never the text as written)."""
    segments = load_segments()
    var = {s["name"]: s["where"] for s in seg_mod.segments_dbt_var()["segments"]}
    assert var == {s.name: s.where_sql for s in segments}
    assert all(s.where_sql and s.where_sql != s.where for s in segments)  # keywords upper-cased: rendered
