"""The run report: written with no inputs at all (every section says why it is missing) and with all of them."""

from __future__ import annotations

import json
import re
from datetime import date
from pathlib import Path
from types import SimpleNamespace

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from c360.pipeline.report import build_report, read_stages, record_stage, timed_stage

D = date(2025, 6, 2)
REF = date(2025, 5, 1)


@pytest.fixture
def report_env(c360_env, tmp_path, monkeypatch):
    """c360_env plus a dbt project folder of our own: never read or write the repository's dbt_project/target."""
    from c360.config import get_settings

    monkeypatch.setenv("DBT_PROJECT_DIR", str(tmp_path / "dbt_project"))
    return get_settings()


def test_report_without_any_input(report_env):
    paths = build_report(D, report_env)
    assert paths.html == report_env.reports_dir / "2025-06-02.html" and paths.json.name == "2025-06-02.json"
    facts = json.loads(paths.json.read_text())
    assert facts["date"] == "2025-06-02"
    for name, section in facts["sections"].items():
        assert section["available"] is False, name
        assert section["reason"], name
    html = paths.html.read_text()
    assert html.count("not available:") >= len(facts["sections"])
    assert "<img" not in html  # no data, no plots


def test_stage_log_format(c360_env):
    record_stage(c360_env, D, "ingest", 12.5, "success", rows=100, dag_id="c360_ingest")
    with pytest.raises(RuntimeError), timed_stage(c360_env, D, "dbt") as st:
        st.rows = 7
        raise RuntimeError("boom")
    with timed_stage(c360_env, D, "dbt") as st:
        st.rows = 8
    with pytest.raises(ValueError, match="status"):
        record_stage(c360_env, D, "x", 1, "done")
    lines = (c360_env.reports_dir / "runs" / "2025-06-02" / "stages.jsonl").read_text().splitlines()
    first = json.loads(lines[0])
    assert first["stage"] == "ingest" and first["seconds"] == 12.5 and first["rows"] == 100
    assert first["status"] == "success" and first["dag_id"] == "c360_ingest" and "started_at" in first
    assert [r["status"] for r in read_stages(c360_env, D)] == ["success", "failed", "success"]
    assert json.loads(lines[1])["error"] == "RuntimeError: boom"


def _write_parquet(folder: Path, columns: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(columns), folder / "part-0.parquet")


@pytest.fixture
def full_inputs(report_env):
    s = report_env
    record_stage(s, D, "ingest", 3.2, "success", rows=1000)
    record_stage(s, D, "dbt build", 20.0, "failed", error="model x failed")
    record_stage(s, D, "dbt build", 21.0, "success")
    record_stage(s, D, "score", 9.0, "success", rows=500)

    s.warehouse_path.parent.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(str(s.warehouse_path))
    con.execute("""
        CREATE SCHEMA raw; CREATE SCHEMA marts; CREATE SCHEMA feature_store; CREATE SCHEMA monitoring;
        CREATE TABLE raw.transactions AS SELECT range AS id, DATE '2025-06-02' AS _dt FROM range(10);
        CREATE TABLE raw.quarantine (entity VARCHAR, reason VARCHAR, _run_date DATE);
        INSERT INTO raw.quarantine VALUES ('transactions', 'bad_amount', DATE '2025-06-02'),
            ('transactions', 'bad_amount', DATE '2025-06-02'), ('customers', 'bad_email', DATE '2025-06-01');
        CREATE TABLE feature_store.customer_features AS SELECT 'c' || range AS customer_id,
            DATE '2025-06-02' AS as_of_date FROM range(5);
        CREATE VIEW feature_store.training_set AS SELECT * FROM feature_store.customer_features;
        CREATE TABLE marts.segment_members (as_of_date DATE, segment VARCHAR, customer_id VARCHAR,
            marketing_consent BOOLEAN, run_id VARCHAR, churn_model_version VARCHAR, clv_model_version VARCHAR,
            recommender_model_version VARCHAR);
        INSERT INTO marts.segment_members VALUES
            ('2025-06-01', 'vip', 'c1', true, 'r0', '2', '1', '1'),
            ('2025-06-02', 'vip', 'c1', true, 'r1', '3', '1', '1'),
            ('2025-06-02', 'vip', 'c2', false, 'r1', '3', '1', '1'),
            ('2025-06-02', 'win_back', 'c3', true, 'r1', '3', '1', '1');
        -- dbt's segment_changes for those members: the report counts entered/exited from it
        CREATE TABLE marts.segment_changes (as_of_date DATE, segment VARCHAR, customer_id VARCHAR, change VARCHAR);
        INSERT INTO marts.segment_changes VALUES ('2025-06-01', 'vip', 'c1', 'entered'),
            ('2025-06-02', 'vip', 'c2', 'entered'), ('2025-06-02', 'win_back', 'c3', 'entered');
        CREATE TABLE monitoring.psi (as_of_date DATE, reference_date DATE, kind VARCHAR, name VARCHAR, psi DOUBLE,
            status VARCHAR, bins INTEGER, reference_rows BIGINT, current_rows BIGINT, computed_at TIMESTAMPTZ);
        INSERT INTO monitoring.psi VALUES
            ('2025-06-02', '2025-05-01', 'score', 'churn_probability', 0.31, 'hold', 10, 500, 500, now()),
            ('2025-06-02', '2025-05-01', 'feature', 'orders_count', 0.12, 'warn', 6, 500, 500, now()),
            ('2025-06-02', '2025-05-01', 'feature', 'tenure_days', 0.01, 'ok', 10, 500, 500, now());
        CREATE TABLE monitoring.volume_checks (as_of_date DATE, entity VARCHAR, landed BIGINT, files INTEGER,
            median DOUBLE, low DOUBLE, high DOUBLE, history INTEGER, status VARCHAR, message VARCHAR,
            checked_at TIMESTAMPTZ);
        INSERT INTO monitoring.volume_checks VALUES
            ('2025-06-02', 'transactions', 10, 1, 9, 1.8, 45, 14, 'ok', 'transactions: within', now());
    """)
    con.close()

    rng = np.random.default_rng(1)
    for day, shift in ((D, 0.1), (REF, 0.0)):
        _write_parquet(s.scores_dir / "scores" / f"dt={day}", {
            "customer_id": [f"c{i}" for i in range(500)],
            "churn_probability": np.clip(rng.beta(2, 5, 500) + shift, 0, 1),
            "predicted_value_eur": rng.lognormal(4, 1, 500),
            "p_alive": rng.uniform(0, 1, 500)})

    target = s.dbt_project_dir / "target"
    assert target.is_relative_to(s.data_dir.parent)  # the test's own folder, never the repository's
    target.mkdir(parents=True, exist_ok=True)
    (target / "run_results.json").write_text(json.dumps({
        "metadata": {"generated_at": "2025-06-03T01:10:00Z", "invocation_id": "abc"},
        "elapsed_time": 30.5,
        "args": {"which": "build", "vars": "{run_date: 2025-06-02}"},
        "results": [
            {"unique_id": "model.c360.customer_360", "status": "success", "failures": None, "message": "OK"},
            {"unique_id": "test.c360.unique_customer_360_customer_id", "status": "pass", "failures": 0},
            {"unique_id": "test.c360.not_null_x", "status": "fail", "failures": 3, "message": "Got 3 results"},
        ]}))
    return s


def test_report_with_all_inputs(full_inputs, monkeypatch):
    s = full_inputs
    # Export manifest for the date, through the real export code path's reader.
    from c360.storage import open_storage

    manifest = {"export_id": "e1", "generated_at": "2025-06-03T02:00:00+00:00", "drift_check": {"status": "hold",
                "forced": True}, "segments": {"vip": {"rows": 1, "excluded_without_consent": 1, "destination": "crm",
                                                      "required_consent": "none"}}}
    open_storage(s.export_uri).write_bytes("dt=2025-06-02/manifest.json", json.dumps(manifest).encode())

    # MLflow: an (empty) store file exists, and a stand-in client answers for the registry.
    db = Path(s.mlflow_tracking_uri.removeprefix("sqlite:///"))
    db.parent.mkdir(parents=True, exist_ok=True)
    db.touch()
    from mlflow.exceptions import MlflowException

    class FakeClient:
        def __init__(self, tracking_uri=None):
            pass

        def get_model_version_by_alias(self, name, alias):
            if name == "recommender":
                raise MlflowException("Registered model alias champion not found.")
            return SimpleNamespace(version=4, run_id="run4", creation_timestamp=1_750_000_000_000,
                                   tags={"validation_status": "passed", "metric.roc_auc": "0.81"})

        def get_run(self, run_id):
            return SimpleNamespace(data=SimpleNamespace(metrics={"roc_auc": 0.81, "pr_auc": 0.44}))

    monkeypatch.setattr("mlflow.MlflowClient", FakeClient)

    paths = build_report(D, s)
    facts = json.loads(paths.json.read_text())
    sec = facts["sections"]
    assert all(sec[k]["available"] for k in sec), {k: v.get("reason") for k, v in sec.items() if not v["available"]}

    stages = {r["stage"]: r for r in sec["stages"]["stages"]}
    assert stages["dbt build"]["status"] == "success" and stages["dbt build"]["attempts"] == 2
    tables = {(t["layer"], t["table"]): t for t in sec["layers"]["tables"]}
    assert tables[("raw", "transactions")]["rows"] == 10 and tables[("raw", "transactions")]["rows_for_date"] == 10
    assert tables[("feature_store", "training_set")]["type"] == "view"
    assert sec["quarantine"]["by_reason"] == [{"entity": "transactions", "reason": "bad_amount", "rows": 2}]
    assert sec["dbt"]["tests"] == {"total": 2, "passed": 1, "failed": 1, "warned": 0}
    assert sec["dbt"]["run_date_var"] == "2025-06-02" and sec["dbt"]["note"] is None
    churn = next(m for m in sec["models"]["models"] if m["name"] == "churn")
    assert churn["version"] == "4" and churn["metrics"] == {"pr_auc": 0.44, "roc_auc": 0.81}
    assert next(m for m in sec["models"]["models"] if m["name"] == "recommender")["available"] is False
    assert sec["models"]["versions_in_segment_members"]["churn"] == ["3"]
    cp = sec["scores"]["columns"]["churn_probability"]
    assert sum(cp["histogram"]["counts"]) == 500 and "reference_histogram" in cp
    assert sec["scores"]["reference_date"] == "2025-05-01"
    segs = {r["segment"]: r for r in sec["segments"]["segments"]}
    # segments.yml: vip needs no consent (everyone exported), win_back needs marketing consent.
    assert segs["vip"] == {"segment": "vip", "members": 2, "with_marketing_consent": 1, "exportable": 2,
                           "entered": 1, "exited": 0}
    assert segs["win_back"]["exportable"] == 1
    assert sec["monitoring"]["exports"]["hold"] is True
    assert [(r["entity"], r["landed"], r["status"]) for r in sec["volume"]["rows"]] == [("transactions", 10, "ok")]
    assert sec["volume"]["decision"]["hold"] is False

    warnings = "\n".join(facts["warnings"])
    assert "drift (hold): score churn_probability" in warnings and "drift (warn): feature orders_count" in warnings
    assert "tenure_days" not in warnings
    assert "exports are held back" in warnings and "dbt: 1 node(s)" in warnings
    assert "forced despite a drift hold" in warnings

    html = paths.html.read_text()
    assert len(re.findall(r'<img alt="plot" src="data:image/png;base64,', html)) == 3  # stages, scores, segments
    assert "not available: no recommender@champion" in html
    assert "http://" not in html and "https://" not in html  # self-contained: nothing fetched when opened


def test_report_flags_dbt_results_of_another_date(full_inputs):
    facts = json.loads(build_report(date(2025, 6, 3), full_inputs).json.read_text())
    assert "these results are from a dbt run for 2025-06-02" in "\n".join(facts["warnings"])
    assert facts["sections"]["segments"]["available"] is False  # no members on 06-03: says so
    assert "no rows for 2025-06-03" in facts["sections"]["segments"]["reason"]


@pytest.mark.reliability
def test_a_failed_rerun_reports_its_own_stages_the_failing_test_and_its_rows(report_env):
    from c360.pipeline.report.stages import mark_night_started

    mark_night_started(report_env, D, ["c360_ingest", "c360_transform", "c360_score"])
    record_stage(report_env, D, "train (no champion yet)", 120.0, "success")
    record_stage(report_env, D, "dbt", 10.0, "success")
    mark_night_started(report_env, D, ["c360_ingest", "c360_transform"])  # the rerun
    record_stage(report_env, D, "dbt", 5.0, "failed", error="DbtRunError: dbt build failed")
    record_stage(report_env, D, "c360_transform (DAG run)", 6.0, "failed", failed_tasks=["dbt_build"])
    target = report_env.dbt_project_dir / "target"
    target.mkdir(parents=True)
    (target / "run_results.json").write_text(json.dumps({"metadata": {}, "args": {}, "results": [
        {"unique_id": "test.c360.not_null_int_order_lines_amount_eur.1", "status": "fail", "failures": 3,
         "message": "Got 3 results, configured to fail if != 0"},
        {"unique_id": "model.c360.int_order_lines", "status": "success", "failures": None}]}))

    facts = json.loads(build_report(D, report_env).json.read_text())
    stages = facts["sections"]["stages"]
    assert stages["total_seconds"] == 11.0  # the rerun's stages only: not the first run's 120 s of training
    assert [r["stage"] for r in stages["earlier_runs"]] == ["train (no champion yet)"]
    assert {r["stage"]: r["attempts"] for r in stages["stages"]} == {"dbt": 1, "c360_transform (DAG run)": 1}
    warnings = "\n".join(facts["warnings"])
    assert "stage c360_transform (DAG run) failed" in warnings and "stage dbt failed" in warnings
    assert "not_null_int_order_lines_amount_eur.1 (fail, 3 failing row(s))" in warnings
    assert "earlier run" in build_report(D, report_env).html.read_text()


@pytest.mark.reliability
def test_champions_accepted_without_their_gates_are_warnings():
    from c360.pipeline.report.collect import collect_warnings

    models = {"available": True, "models": [
        {"name": "c360_churn", "available": True, "version": "1", "validation_status": "failed",
         "tags": {"accepted_without_gates": "true"}},
        {"name": "c360_clv", "available": True, "version": "2", "validation_status": "passed", "tags": {}}]}
    warnings = collect_warnings({"models": models})
    assert len(warnings) == 1
    assert "c360_churn v1 is @champion without passing its gates" in warnings[0]
    assert "C360_FIRST_CHAMPION=accept" in warnings[0]


# ------------------------------------------------------------------------------- the summary (first section)


def _summary_html(html: str) -> str:
    """The text of the page's summary section (between its heading and the engineers' details)."""
    part = html[html.index('<h2 id="summary">'):html.index('<h2 id="details">')]
    return re.sub(r"<[^>]+>", " ", part)


def _warehouse(settings, sql: str) -> None:
    settings.warehouse_path.parent.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(str(settings.warehouse_path))
    con.execute(sql)
    con.close()


def _fake_registry(monkeypatch, settings, champions: dict[str, dict]) -> None:
    """An (empty) MLflow store file and a stand-in client whose @champion versions carry the given tags."""
    from mlflow.exceptions import MlflowException

    db = Path(settings.mlflow_tracking_uri.removeprefix("sqlite:///"))
    db.parent.mkdir(parents=True, exist_ok=True)
    db.touch()

    class FakeClient:
        def __init__(self, tracking_uri=None):
            pass

        def get_model_version_by_alias(self, name, alias):
            if name not in champions:
                raise MlflowException(f"Registered model alias champion not found for {name}.")
            return SimpleNamespace(run_id=None, creation_timestamp=None, **champions[name])

    monkeypatch.setattr("mlflow.MlflowClient", FakeClient)


def test_summary_without_any_input_says_why_each_part_is_missing(report_env):
    paths = build_report(D, report_env)
    summary = json.loads(paths.json.read_text())["summary"]
    assert summary["date"] == "2025-06-02" and summary["status"] == "unknown"
    for part in ("run", "segments", "next_best_action", "models"):
        assert summary[part]["available"] is False, part
        assert summary[part]["reason"] and summary[part]["sentences"][0].startswith("not available: "), part
    assert "no stage log" in summary["run"]["reason"]
    assert "no warehouse" in summary["segments"]["reason"]
    assert "no warehouse" in summary["next_best_action"]["reason"]
    assert summary["holds"]["held"] == [] and summary["holds"]["exports"]["status"] == "not exported"
    # nothing held, and it says the checks never ran, and why
    assert summary["holds"]["sentences"][0].startswith("Nothing held or forced: the volume check did not run (no "
                                                       "warehouse at")
    text = _summary_html(paths.html.read_text())
    assert text.count("not available:") >= 4
    assert "No stage was recorded for the night of 2025-06-02" in text


def test_summary_names_the_held_export_and_why(report_env):
    """Drift and volume both say hold, nothing exported: each hold is one sentence with its reason and runbook."""
    s = report_env
    record_stage(s, D, "ingest", 2.0, "success")
    record_stage(s, D, "score", 0.0, "skipped", note="Scoring and exports for 2025-06-02 are held: ...")
    _warehouse(s, """
        CREATE SCHEMA monitoring;
        CREATE TABLE monitoring.psi (as_of_date DATE, reference_date DATE, kind VARCHAR, name VARCHAR, psi DOUBLE,
            status VARCHAR, bins INTEGER, reference_rows BIGINT, current_rows BIGINT, computed_at TIMESTAMPTZ);
        INSERT INTO monitoring.psi VALUES
            ('2025-06-02', '2025-05-01', 'score', 'churn_probability', 0.42, 'hold', 10, 500, 500, now()),
            ('2025-06-02', '2025-05-01', 'feature', 'tenure_days', 0.01, 'ok', 10, 500, 500, now());
        CREATE TABLE monitoring.volume_checks (as_of_date DATE, entity VARCHAR, landed BIGINT, files INTEGER,
            median DOUBLE, low DOUBLE, high DOUBLE, history INTEGER, status VARCHAR, message VARCHAR,
            checked_at TIMESTAMPTZ);
        INSERT INTO monitoring.volume_checks VALUES
            ('2025-06-02', 'transactions', 1930, 1, 193, 39, 965, 14, 'high', 'transactions: 1,930 rows, ABOVE', now()),
            ('2025-06-02', 'customers', 50, 1, 48, 10, 240, 14, 'ok', 'customers: within', now());
    """)
    paths = build_report(D, s)
    summary = json.loads(paths.json.read_text())["summary"]
    assert summary["status"] == "held"
    held = {h["kind"]: h for h in summary["holds"]["held"]}
    assert set(held) == {"drift", "volume"}
    assert "churn_probability (PSI 0.42)" in held["drift"]["reason"] and "tenure_days" not in held["drift"]["reason"]
    assert held["volume"]["reason"] == "transactions landed 1,930 rows, expected 39 to 965"
    assert held["volume"]["runbook"] == "docs/runbooks.md#a-night-held-for-volume"
    assert summary["holds"]["exports"]["status"] == "held" and summary["holds"]["forced"] == []
    text = _summary_html(paths.html.read_text())
    assert "exports are held by the volume check and the drift check" in text
    assert "Exports are held for drift against 2025-05-01: score churn_probability (PSI 0.42)" in text
    assert "held for volume: transactions landed 1,930 rows, expected 39 to 965" in text
    assert "c360 nightly --date 2025-06-02 --accept-volume" in text
    assert "No export was written: held, see above." in text


def test_summary_says_when_exports_were_forced(full_inputs):
    summary = json.loads(build_report(D, full_inputs).json.read_text())["summary"]
    # before any export: drift holds the night's exports
    assert [h["kind"] for h in summary["holds"]["held"]] == ["drift"] and summary["status"] == "held"
    from c360.storage import open_storage

    manifest = {"export_id": "e9", "generated_at": "2025-06-03T02:00:00+00:00",
                "drift_check": {"status": "hold", "forced": True},
                "segments": {"vip": {"rows": 2, "excluded_without_consent": 0, "destination": "crm",
                                     "required_consent": "none"}}}
    open_storage(full_inputs.export_uri).write_bytes("dt=2025-06-02/manifest.json", json.dumps(manifest).encode())
    paths = build_report(D, full_inputs)
    holds = json.loads(paths.json.read_text())["summary"]["holds"]
    assert [(f["kind"], f["status"]) for f in holds["forced"]] == [("drift", "forced")] and holds["held"] == []
    assert holds["exports"] == {**holds["exports"], "status": "forced", "export_id": "e9", "rows": 2}
    assert holds["exports"]["sentence"].startswith("Exports written: 1 segment file(s), 2 row(s) in total (export e9")
    assert "Exports were forced despite a drift hold: score churn_probability (PSI 0.31)" in _summary_html(
        paths.html.read_text())

    # exported while the check still passed (monitoring recorded later): not "held", and the reader is told
    manifest["drift_check"] = {"status": "not_checked", "forced": False}
    open_storage(full_inputs.export_uri).write_bytes("dt=2025-06-02/manifest.json", json.dumps(manifest).encode())
    holds = json.loads(build_report(D, full_inputs).json.read_text())["summary"]["holds"]
    assert holds["held"] == holds["forced"] == [] and holds["exports"]["status"] == "exported"
    assert [i["kind"] for i in holds["after_export"]] == ["drift"]
    assert "the export was written when it said not_checked" in holds["sentences"][0]


def test_summary_segment_changes_against_the_previous_night_present(report_env):
    """The previous night is the latest date before D in marts.segment_members: 05-30 here (06-01 never ran),
    never a later one; a segment empty tonight still shows, with what it had."""
    _warehouse(report_env, """
        CREATE SCHEMA marts;
        CREATE TABLE marts.segment_members (as_of_date DATE, segment VARCHAR, customer_id VARCHAR,
            marketing_consent BOOLEAN, run_id VARCHAR, churn_model_version VARCHAR, clv_model_version VARCHAR,
            recommender_model_version VARCHAR);
        INSERT INTO marts.segment_members
            SELECT DATE '2025-05-29', 'vip', 'o' || range, true, 'r', '1', '1', '1' FROM range(9);
        INSERT INTO marts.segment_members
            SELECT DATE '2025-05-30', 'vip', 'c' || range, true, 'r', '1', '1', '1' FROM range(5);
        INSERT INTO marts.segment_members
            SELECT DATE '2025-05-30', 'lapsed', 'l' || range, true, 'r', '1', '1', '1' FROM range(3);
        INSERT INTO marts.segment_members
            SELECT DATE '2025-06-02', 'vip', 'c' || range, true, 'r', '1', '1', '1' FROM range(2, 9);
        INSERT INTO marts.segment_members
            SELECT DATE '2025-06-02', 'win_back', 'w' || range, false, 'r', '1', '1', '1' FROM range(4);
        INSERT INTO marts.segment_members
            SELECT DATE '2025-06-03', 'vip', 'x' || range, true, 'r', '1', '1', '1' FROM range(50);
        CREATE TABLE marts.segment_changes (as_of_date DATE, segment VARCHAR, customer_id VARCHAR, change VARCHAR);
        INSERT INTO marts.segment_changes SELECT DATE '2025-06-02', 'vip', 'c' || range, 'entered' FROM range(5, 9);
        INSERT INTO marts.segment_changes SELECT DATE '2025-06-02', 'vip', 'c' || range, 'exited' FROM range(2);
        INSERT INTO marts.segment_changes SELECT DATE '2025-06-02', 'win_back', 'w' || range, 'entered' FROM range(4);
    """)
    paths = build_report(D, report_env)
    segs = json.loads(paths.json.read_text())["summary"]["segments"]
    assert segs["available"] is True and segs["previous_date"] == "2025-05-30"
    rows = {r["segment"]: r for r in segs["segments"]}
    assert rows["vip"] == {"segment": "vip", "members": 7, "previous_members": 5, "delta": 2, "entered": 4,
                           "exited": 2}
    assert rows["win_back"] == {"segment": "win_back", "members": 4, "previous_members": 0, "delta": 4,
                                "entered": 4, "exited": 0}
    assert rows["lapsed"]["members"] == 0 and rows["lapsed"]["previous_members"] == 3 and rows["lapsed"]["delta"] == -3
    text = _summary_html(paths.html.read_text())
    assert "against the previous night 2025-05-30: win_back +4, lapsed -3, vip +2." in text  # biggest first
    assert re.search(r"vip\s+7\s+5\s+\+2\s+4\s+2", text)  # the table row: tonight, last night, change, in, out

    # The first night has nothing to compare with: sizes without deltas, and why.
    first = json.loads(build_report(date(2025, 5, 29), report_env).json.read_text())["summary"]["segments"]
    assert first["previous_date"] is None and "no night before 2025-05-29" in first["previous_reason"]
    assert first["segments"] == [{"segment": "vip", "members": 9, "previous_members": None, "delta": None,
                                  "entered": 0, "exited": 0}]


def test_summary_puts_a_failed_stage_first_with_its_error_and_runbook(report_env):
    record_stage(report_env, D, "ingest", 3.0, "success", rows=10)
    record_stage(report_env, D, "dbt", 5.0, "failed",
                 error="DbtRunError: dbt build failed: test not_null_x\nTraceback (most recent call last):\n  ...")
    record_stage(report_env, D, "score", 1.0, "skipped")
    paths = build_report(D, report_env)
    summary = json.loads(paths.json.read_text())["summary"]
    assert summary["status"] == "failed" and summary["run"]["status"] == "failed"
    assert summary["headline"] == "The night of 2025-06-02 FAILED: dbt."
    first = summary["run"]["stages"][0]
    assert first["stage"] == "dbt" and first["status"] == "failed"
    assert first["error"] == "DbtRunError: dbt build failed: test not_null_x"  # the first line only
    assert first["runbook"] == "docs/runbooks.md#a-night-failed" and "dbt model or data test failed" in first["do"]
    assert [s["stage"] for s in summary["run"]["stages"]] == ["dbt", "ingest", "score"]
    assert summary["run"]["total_seconds"] == 9.0
    text = _summary_html(paths.html.read_text())
    assert text.index("Stage dbt failed") < text.index("What ran")  # the failure before anything else
    assert "Traceback" not in text
    assert "3 stage(s) recorded for the night of 2025-06-02, 9.0 s in total" in text and "ingest ok" in text


def test_report_command_prints_the_headline(report_env, capsys):
    from c360.cli import main

    record_stage(report_env, D, "dbt", 5.0, "failed", error="DbtRunError: dbt build failed")
    assert main(["report", "--date", "2025-06-02"]) == 0
    assert "The night of 2025-06-02 FAILED: dbt." in capsys.readouterr().out


def test_every_runbook_the_summary_points_to_exists():
    from c360.pipeline.report.summary import ADVICE, DEFAULT_ADVICE, advice_for

    runbooks = (Path(__file__).resolve().parents[1] / "docs" / "runbooks.md").read_text()
    anchors = {re.sub(r"[^a-z0-9 -]", "", h.lower()).replace(" ", "-")
               for h in re.findall(r"^## (.+)$", runbooks, re.M)}
    for _, _, anchor in (*ADVICE, ("", "", DEFAULT_ADVICE[1]), ("", "", "a-night-held-for-volume")):
        assert anchor in anchors, anchor
    assert advice_for("c360_score (DAG run)", "WarehouseLocked: held by pid 12", D)[1].endswith("#a-night-failed")
    assert advice_for("score", "ScoringError: no churn@champion", D)[1].endswith("#retrain-the-models")
    assert "DATE=2025-06-02" in advice_for("export", "something new", D)[0]
    # an error that merely mentions dbt in its own advice is not a dbt failure (seen on a real failed night)
    missing = "SnapshotMissing: feature_store.customer_features has no rows: run the dbt build for 2025-06-02 first"
    assert "read the error" in advice_for("feature export", missing, D)[0]
    assert "dbt model or data test failed" in advice_for("dbt", "DbtRunError: dbt build failed: 1 error", D)[0]
    assert advice_for("sync", "RuntimeError: odd", D)[1].endswith("#a-destination-sync-failed")
    assert "c360 sync --date 2025-06-02" in advice_for("sync", "RuntimeError: odd", D)[0]


def test_summary_counts_next_best_actions_of_the_night(report_env):
    _warehouse(report_env, """
        CREATE SCHEMA marts;
        CREATE TABLE marts.customer_next_best_action (as_of_date DATE, customer_id VARCHAR, action VARCHAR,
            expected_value_eur DOUBLE, suppressed_by VARCHAR);
        INSERT INTO marts.customer_next_best_action VALUES
            ('2025-06-02', 'a', 'retain', 10.5, NULL), ('2025-06-02', 'b', 'retain', 4.5, NULL),
            ('2025-06-02', 'c', 'nurture', 1.0, NULL), ('2025-06-02', 'd', 'none', NULL, 'no_consent'),
            ('2025-06-02', 'e', 'none', NULL, 'no_consent'), ('2025-06-02', 'f', 'none', NULL, 'contact_cap'),
            ('2025-06-01', 'a', 'win_back', 99.0, NULL);
    """)
    paths = build_report(D, report_env)
    nba = json.loads(paths.json.read_text())["summary"]["next_best_action"]
    assert nba["available"] is True and nba["customers"] == 6 and nba["expected_value_eur"] == 16.0
    assert [(a["action"], a["customers"], a["expected_value_eur"]) for a in nba["actions"]] == [
        ("retain", 2, 15.0), ("nurture", 1, 1.0), ("none", 3, 0.0)]
    assert nba["suppressed_by"] == {"no_consent": 2, "contact_cap": 1}
    text = _summary_html(paths.html.read_text())
    assert "Next-best actions for 2025-06-02: 2 retain, 1 nurture (16 EUR expected); 3 customer(s) get none " \
           "(no_consent 2, contact_cap 1)." in text
    other = json.loads(build_report(date(2025, 6, 5), report_env).json.read_text())["summary"]["next_best_action"]
    assert other["available"] is False and "no rows for 2025-06-05" in other["reason"]


def test_summary_model_status_gates_and_tonights_promotion(report_env, monkeypatch):
    """churn promoted during the night (deployments audit, written by ml.registry), clv promoted a week before,
    the recommender's first champion tonight; clv's champion was accepted without its gates."""
    import sqlite3

    from ml.registry import DeploymentAudit

    s = report_env
    audit = DeploymentAudit(s.deployments_audit_path)
    audit.append(model_name="clv", alias="champion", action="promote", from_version=None, to_version="1")
    with sqlite3.connect(s.deployments_audit_path) as con:  # that promotion happened a week before the night
        con.execute("UPDATE deployments SET event_time = '2025-05-26T03:00:00+00:00'")
    record_stage(s, D, "ingest", 1.0, "success")
    audit.append(model_name="churn", alias="champion", action="promote", from_version="2", to_version="3")
    audit.append(model_name="churn", alias="challenger", action="register", from_version=None, to_version="4")
    audit.append(model_name="recommender", alias="champion", action="promote", from_version=None, to_version="1")
    record_stage(s, D, "train", 1.0, "success")
    _fake_registry(monkeypatch, s, {
        "churn": {"version": 3, "tags": {"validation_status": "passed"}},
        "clv": {"version": 1, "tags": {"validation_status": "failed", "accepted_without_gates": "true"}},
        "recommender": {"version": 1, "tags": {}}})
    paths = build_report(D, s)
    models = json.loads(paths.json.read_text())["summary"]["models"]
    by_name = {m["name"]: m for m in models["models"]}
    assert by_name["churn"]["version"] == "3" and by_name["churn"]["passed_gates"] is True
    assert by_name["churn"]["promoted_tonight"] is True and by_name["churn"]["promotions"][0]["from_version"] == "2"
    assert by_name["clv"]["passed_gates"] is False and by_name["clv"]["promoted_tonight"] is False
    assert by_name["recommender"]["passed_gates"] is None  # no validation recorded: unknown, not a pass
    assert models["promoted_tonight"] == ["churn", "recommender"]
    text = _summary_html(paths.html.read_text())
    assert "churn v3 is champion, passed its gates; NEW champion tonight (promoted from v2" in text
    assert "clv v1 is champion, did NOT pass its gates; no new champion tonight." in text
    assert "recommender v1 is champion, no gate result recorded; NEW champion tonight (promoted as the first " \
           "champion at" in text

    # Without a deployments audit the promotion is unknown, and the summary says why (once, not per model).
    s.deployments_audit_path.unlink()
    models = json.loads(build_report(D, s).json.read_text())["summary"]["models"]
    assert models["promoted_tonight"] is None and "no deployments audit" in models["promotions_reason"]
    assert sum("not known" in x for x in models["sentences"]) == 1
