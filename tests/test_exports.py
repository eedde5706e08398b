"""Segment exports on a tiny synthetic warehouse: consent, manifest, atomicity, determinism, deltas, S3, hold-back."""

from __future__ import annotations

import ast
import csv
import io
import json
from datetime import date
from pathlib import Path

import duckdb
import jinja2
import pyarrow.parquet as pq
import pytest

from c360.marketing.exports import ExportError, ExportHeld, export_segments, read_manifest, verify_export
from c360.marketing.segments import parse_segments
from c360.storage import LocalStorage, open_storage, sha256_bytes

D1, D2 = date(2025, 6, 1), date(2025, 6, 2)

SEGMENTS = parse_segments({"segments": [
    {"name": "loyal", "description": "d", "where": "value_decile >= 8", "required_consent": "marketing",
     "destination": "crm", "columns": ["churn_probability", "value_decile", "rec_1", "rec_2", "rec_3", "first_name"]},
    {"name": "service", "description": "d", "where": "orders_count >= 3", "required_consent": "none",
     "destination": "crm", "columns": ["predicted_value_eur"]},
]})

# (date, segment, customer) members; consent per (date, customer).
MEMBERS = {
    D1: {"loyal": ["c1", "c2", "c3"], "service": ["c1", "c2"]},
    D2: {"loyal": ["c1", "c2", "c4", "c5"], "service": ["c2", "c6"]},
}
CONSENT = {
    D1: {"c1": True, "c2": False, "c3": True, "c4": True, "c5": False, "c6": False},
    D2: {"c1": True, "c2": False, "c3": True, "c4": True, "c5": False, "c6": False},
}


EXPORT_ROWS_MODEL = Path(__file__).resolve().parents[1] / "dbt_project/models/pii/segment_export_rows.sql"
# Where dbt puts the model's inputs (schema per folder, dbt_project.yml): the relations build_warehouse creates.
REFS = {"segment_members": "marts.segment_members", "segment_changes": "marts.segment_changes",
        "customer_features": "feature_store.customer_features", "pii_customer_contacts": "pii.pii_customer_contacts",
        "customer_recommendations": "marts.customer_recommendations"}


def export_rows_view_sql() -> str:
    """The dbt model pii.segment_export_rows as DuckDB DDL: its own SQL, with ref() resolved to REFS. The exports'
    rows are decided there, so these tests run the real model rather than a copy of its logic."""
    template = jinja2.Environment(undefined=jinja2.StrictUndefined).from_string(EXPORT_ROWS_MODEL.read_text())
    return "CREATE OR REPLACE VIEW pii.segment_export_rows AS " + template.render(
        ref=REFS.__getitem__, config=lambda **_: "", reader_view=lambda: "view")


def segment_changes(dates) -> list[tuple]:
    """marts.segment_changes as dbt builds it from MEMBERS (every date evaluated; the first lists all as entered)."""
    rows, previous = [], None
    for day in sorted(dates):
        for seg, customers in MEMBERS[day].items():
            before = set(MEMBERS[previous].get(seg, [])) if previous else set()
            rows += [(day, seg, c, "entered", previous) for c in sorted(set(customers) - before)]
            rows += [(day, seg, c, "exited", previous) for c in sorted(before - set(customers))]
        previous = day
    return rows


def build_warehouse(path, dates=(D1, D2), with_recs=True, with_features=True, run_id="run-1",
                    recommender="5") -> None:
    """The inputs of pii.segment_export_rows, then the view itself. with_recs / with_features False leave
    those dbt tables empty (what dbt builds for a date without recommendations or without a feature snapshot)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(str(path))
    con.execute("""
        CREATE SCHEMA IF NOT EXISTS marts; CREATE SCHEMA IF NOT EXISTS pii; CREATE SCHEMA IF NOT EXISTS feature_store;
        CREATE OR REPLACE TABLE marts.segment_members (
            as_of_date DATE, segment VARCHAR, customer_id VARCHAR, churn_probability DOUBLE, churn_decile INTEGER,
            p_alive DOUBLE, predicted_value_eur DOUBLE, value_decile INTEGER, marketing_consent BOOLEAN,
            run_id VARCHAR, churn_model_version VARCHAR, clv_model_version VARCHAR,
            recommender_model_version VARCHAR, feature_snapshot_date DATE);
        CREATE OR REPLACE TABLE marts.segment_changes (as_of_date DATE, segment VARCHAR, customer_id VARCHAR,
                                                       change VARCHAR, previous_as_of_date DATE);
        CREATE OR REPLACE TABLE pii.pii_customer_contacts (customer_id VARCHAR, email VARCHAR, first_name VARCHAR,
                                                           last_name VARCHAR, marketing_consent BOOLEAN);
        CREATE OR REPLACE TABLE marts.customer_recommendations (as_of_date DATE, customer_id VARCHAR,
            rank INTEGER, product_id VARCHAR, score DOUBLE, recommender_model_version VARCHAR);
        CREATE OR REPLACE TABLE feature_store.customer_features (customer_id VARCHAR, as_of_date DATE,
                                                                 marketing_consent BOOLEAN);
    """)
    for day in dates:
        for seg, customers in MEMBERS[day].items():
            for i, c in enumerate(customers):
                con.execute("INSERT INTO marts.segment_members VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, '3', '2', ?, ?)",
                            [day, seg, c, 0.1234567 + i / 10, 9, 0.5, 100.456 + i, 9, CONSENT[day][c], run_id,
                             recommender, day])
    con.executemany("INSERT INTO marts.segment_changes VALUES (?, ?, ?, ?, ?)", segment_changes(dates))
    # Current consent: yes for everyone (the per-date consent decides); tests withdraw it where they need to.
    for c in ["c1", "c2", "c3", "c4", "c5", "c6"]:
        con.execute("INSERT INTO pii.pii_customer_contacts VALUES (?, ?, ?, ?, true)",
                    [c, f"{c}@example.com", c.upper(), "X"])
    if with_recs:
        for day in dates if recommender else ():  # no recommender: dbt still builds the (empty) mart
            for c in ["c1", "c4"]:
                for rank in (1, 2, 3, 4):
                    con.execute("INSERT INTO marts.customer_recommendations VALUES (?, ?, ?, ?, 0.5, '5')",
                                [day, c, rank, f"p{rank}-{c}"])
    if with_features:
        for day in dates:
            for c, ok in CONSENT[day].items():
                con.execute("INSERT INTO feature_store.customer_features VALUES (?, ?, ?)", [c, day, ok])
    con.execute(export_rows_view_sql())
    con.close()


def read_csv(storage, key) -> list[dict]:
    return list(csv.DictReader(io.StringIO(storage.read_bytes(key).decode())))


def file_key(manifest, segment, kind) -> str:
    return f"dt={manifest['as_of_date']}/{manifest['segments'][segment]['files'][kind]['path']}"


@pytest.fixture
def warehouse(c360_env):
    build_warehouse(c360_env.warehouse_path)
    return c360_env


def test_consent_filter_and_email_rule(warehouse):
    manifest = export_segments(D2, warehouse, segments=SEGMENTS)
    storage = open_storage(warehouse.export_uri)

    loyal = read_csv(storage, file_key(manifest, "loyal", "csv"))
    assert [r["customer_id"] for r in loyal] == ["c1", "c4"]  # c2 and c5 have no marketing consent
    assert all(r["email"] == f"{r['customer_id']}@example.com" for r in loyal)
    assert loyal[0]["first_name"] == "C1"
    assert (loyal[0]["rec_1"], loyal[0]["rec_2"], loyal[0]["rec_3"]) == ("p1-c1", "p2-c1", "p3-c1")
    assert loyal[0]["churn_probability"] == "0.123457" and loyal[0]["run_id"] == "run-1"
    assert loyal[0]["churn_model_version"] == "3" and loyal[0]["as_of_date"] == "2025-06-02"
    # No consent-less customer anywhere in the consent-requiring segment's files.
    for kind in ("csv", "entered", "exited"):
        ids = {r["customer_id"] for r in read_csv(storage, file_key(manifest, "loyal", kind))}
        assert not ids & {"c2", "c5", "c6"}, kind
    parquet = pq.read_table(io.BytesIO(storage.read_bytes(file_key(manifest, "loyal", "parquet")))).to_pylist()
    assert [r["customer_id"] for r in parquet] == ["c1", "c4"]
    assert parquet[0]["as_of_date"] == D2 and parquet[0]["value_decile"] == 9

    # A segment without a consent requirement exports everyone, with the email blank unless consented.
    service = read_csv(storage, file_key(manifest, "service", "csv"))
    assert [(r["customer_id"], r["email"]) for r in service] == [("c2", ""), ("c6", "")]
    assert manifest["segments"]["loyal"]["excluded_without_consent"] == 2
    assert manifest["segments"]["service"]["excluded_without_consent"] == 0


@pytest.mark.reliability
def test_feature_store_consent_withdrawal_wins(c360_env):
    """If the feature store says no consent at the date, the member row's stale 'true' does not export them."""
    build_warehouse(c360_env.warehouse_path)
    con = duckdb.connect(str(c360_env.warehouse_path))
    con.execute("UPDATE feature_store.customer_features SET marketing_consent = false WHERE customer_id = 'c4'")
    con.close()
    manifest = export_segments(D2, c360_env, segments=SEGMENTS)
    rows = read_csv(open_storage(c360_env.export_uri), file_key(manifest, "loyal", "csv"))
    assert [r["customer_id"] for r in rows] == ["c1"]


@pytest.mark.reliability
def test_current_consent_in_contacts_vetoes_a_stale_yes(c360_env):
    """pii.pii_customer_contacts' current consent vetoes the date's 'yes' (a withdrawal since the date wins, e.g. when
    an old date is re-exported): c4 leaves the full list and the entered file."""
    build_warehouse(c360_env.warehouse_path)
    con = duckdb.connect(str(c360_env.warehouse_path))
    con.execute("UPDATE pii.pii_customer_contacts SET marketing_consent = false WHERE customer_id = 'c4'")
    con.close()
    manifest = export_segments(D2, c360_env, segments=SEGMENTS)
    storage = open_storage(c360_env.export_uri)
    assert [r["customer_id"] for r in read_csv(storage, file_key(manifest, "loyal", "csv"))] == ["c1"]
    assert read_csv(storage, file_key(manifest, "loyal", "entered")) == []  # c4 withdrew since


def test_manifest_matches_files(warehouse):
    manifest = export_segments(D2, warehouse, segments=SEGMENTS)
    storage = open_storage(warehouse.export_uri)
    assert json.loads(storage.read_bytes("dt=2025-06-02/manifest.json")) == manifest
    assert manifest["as_of_date"] == "2025-06-02" and manifest["run_id"] == "run-1"
    for name, entry in manifest["segments"].items():
        assert set(entry["files"]) == {"csv", "parquet", "entered", "exited"}
        assert entry["model_versions"] == {"churn": "3", "clv": "2", "recommender": "5"}
        assert entry["feature_snapshot_date"] == "2025-06-02"
        assert entry["consent_rule_applied"]
        for kind, f in entry["files"].items():
            data = storage.read_bytes(f"dt=2025-06-02/{f['path']}")
            assert sha256_bytes(data) == f["sha256"] and len(data) == f["bytes"]
            assert f["path"].startswith(f"run={manifest['export_id']}/{name}")
            if kind == "parquet":
                assert pq.read_metadata(io.BytesIO(data)).num_rows == f["rows"] == entry["rows"]
            else:
                assert len(list(csv.DictReader(io.StringIO(data.decode())))) == f["rows"]
    assert verify_export(D2, warehouse) == manifest
    # Nothing left in staging.
    assert not [d for d in storage.list_dirs("dt=2025-06-02") if d.startswith("_tmp-")]


def test_deltas_for_two_consecutive_dates(warehouse):
    storage = open_storage(warehouse.export_uri)
    first = export_segments(D1, warehouse, segments=SEGMENTS)
    # No earlier date: every (consenting) member entered.
    assert [r["customer_id"] for r in read_csv(storage, file_key(first, "loyal", "entered"))] == ["c1", "c3"]
    second = export_segments(D2, warehouse, segments=SEGMENTS)
    entered = read_csv(storage, file_key(second, "loyal", "entered"))
    exited = read_csv(storage, file_key(second, "loyal", "exited"))
    assert [(r["customer_id"], r["change"], r["email"]) for r in entered] == [("c4", "entered", "c4@example.com")]
    assert [(r["customer_id"], r["change"]) for r in exited] == [("c3", "exited")]  # c5 entered without consent
    service_entered = read_csv(storage, file_key(second, "service", "entered"))
    service_exited = read_csv(storage, file_key(second, "service", "exited"))
    assert [(r["customer_id"], r["email"]) for r in service_entered] == [("c6", "")]
    assert [r["customer_id"] for r in service_exited] == ["c1"]
    assert (second["segments"]["loyal"]["entered"], second["segments"]["loyal"]["exited"]) == (1, 1)


def test_deltas_come_from_dbt_segment_changes(warehouse):
    """The change files list what marts.segment_changes says, nothing derived on the side."""
    con = duckdb.connect(str(warehouse.warehouse_path))
    con.execute("DELETE FROM marts.segment_changes")
    con.execute("INSERT INTO marts.segment_changes VALUES (DATE '2025-06-02', 'loyal', 'c1', 'entered', NULL)")
    con.close()
    manifest = export_segments(D2, warehouse, segments=SEGMENTS)
    storage = open_storage(warehouse.export_uri)
    assert [r["customer_id"] for r in read_csv(storage, file_key(manifest, "loyal", "entered"))] == ["c1"]
    assert read_csv(storage, file_key(manifest, "loyal", "exited")) == []
    assert (manifest["segments"]["loyal"]["entered"], manifest["segments"]["loyal"]["exited"]) == (1, 0)


@pytest.mark.reliability
def test_rerun_gives_identical_files(warehouse):
    first = export_segments(D2, warehouse, segments=SEGMENTS)
    storage = open_storage(warehouse.export_uri)
    first_bytes = {(n, k): storage.read_bytes(file_key(first, n, k))
                   for n, e in first["segments"].items() for k in e["files"]}
    second = export_segments(D2, warehouse, segments=SEGMENTS)
    assert second["export_id"] != first["export_id"] and second["previous_export_id"] == first["export_id"]
    for (name, kind), data in first_bytes.items():
        assert storage.read_bytes(file_key(second, name, kind)) == data
        assert second["segments"][name]["files"][kind]["sha256"] == first["segments"][name]["files"][kind]["sha256"]
    # The previous run's folder is kept (a reader may be mid-download); older ones are collected.
    third = export_segments(D2, warehouse, segments=SEGMENTS)
    runs = storage.list_dirs("dt=2025-06-02")
    assert runs == sorted([f"run={second['export_id']}", f"run={third['export_id']}"])


@pytest.mark.reliability
@pytest.mark.parametrize("fail_at", [3, 10, 17], ids=["staging", "publishing", "manifest"])
def test_failure_mid_export_keeps_previous_manifest(warehouse, monkeypatch, fail_at):
    good = export_segments(D2, warehouse, segments=SEGMENTS)
    real_write = LocalStorage.write_bytes
    calls = {"n": 0}

    def flaky_write(self, key, data):
        calls["n"] += 1
        if calls["n"] == fail_at:  # 8 staged files, 8 published, then the manifest (17th write)
            raise OSError("disk full (injected)")
        return real_write(self, key, data)

    # Different inputs, so a half-published export would be detectable.
    con = duckdb.connect(str(warehouse.warehouse_path))
    con.execute("UPDATE marts.segment_members SET churn_probability = 0.9")
    con.close()
    monkeypatch.setattr(LocalStorage, "write_bytes", flaky_write)
    with pytest.raises(ExportError, match="injected"):
        export_segments(D2, warehouse, segments=SEGMENTS)
    monkeypatch.setattr(LocalStorage, "write_bytes", real_write)
    assert calls["n"] == fail_at

    storage = open_storage(warehouse.export_uri)
    assert read_manifest(storage, D2) == good
    assert verify_export(D2, warehouse) == good  # every file the old manifest names is intact
    # The next successful run collects whatever the failed one left behind.
    new = export_segments(D2, warehouse, segments=SEGMENTS)
    assert storage.list_dirs("dt=2025-06-02") == sorted([f"run={good['export_id']}", f"run={new['export_id']}"])


def test_partial_export_keeps_other_segments(warehouse):
    full = export_segments(D2, warehouse, segments=SEGMENTS)
    part = export_segments(D2, warehouse, segments=SEGMENTS, only=["service"])
    assert part["segments"]["loyal"] == full["segments"]["loyal"]
    assert part["segments"]["service"]["export_id"] == part["export_id"]
    assert verify_export(D2, warehouse) == part


def test_missing_recommendations_and_features_degrade(c360_env):
    build_warehouse(c360_env.warehouse_path, with_recs=False, with_features=False)
    manifest = export_segments(D2, c360_env, segments=SEGMENTS)
    storage = open_storage(c360_env.export_uri)
    rows = read_csv(storage, file_key(manifest, "loyal", "csv"))
    assert [r["customer_id"] for r in rows] == ["c1", "c4"] and rows[0]["rec_1"] == ""
    # the scores name a recommender version but its mart has no rows for the date: the columns stay, empty
    assert any("customer_recommendations has no rows for 2025-06-02" in w
               for w in manifest["segments"]["loyal"]["warnings"])
    # c3 left every segment and there is no feature store to vouch for its consent: it stays out (fail closed).
    assert read_csv(storage, file_key(manifest, "loyal", "exited")) == []


def test_a_night_without_recommender_exports_no_recommendation_columns(c360_env):
    """A transactions-only shop has no recommender: its files leave rec_1..rec_3 and recommender_model_version out
    (not always-empty columns), the manifest says why, and verify_export still checks every file."""
    build_warehouse(c360_env.warehouse_path, recommender=None)
    manifest = export_segments(D2, c360_env, segments=SEGMENTS)
    storage = open_storage(c360_env.export_uri)
    expected = ["customer_id", "email", "segment", "churn_probability", "value_decile", "first_name", "run_id",
                "as_of_date", "churn_model_version", "clv_model_version", "feature_snapshot_date"]
    assert manifest["segments"]["loyal"]["columns"] == expected
    rows = read_csv(storage, file_key(manifest, "loyal", "csv"))
    assert [r["customer_id"] for r in rows] == ["c1", "c4"] and list(rows[0]) == expected
    table = pq.read_table(io.BytesIO(storage.read_bytes(file_key(manifest, "loyal", "parquet"))))
    assert table.column_names == expected
    assert any("no recommendations for 2025-06-02" in w for w in manifest["segments"]["loyal"]["warnings"])
    assert not any("recommendations" in w for w in manifest["segments"]["service"]["warnings"])
    assert manifest["segments"]["loyal"]["model_versions"]["recommender"] is None
    verify_export(D2, c360_env)


def test_missing_contacts_is_a_clear_error(c360_env):
    """The model is a view: a missing input shows when it is read, and the error names it and what to build."""
    build_warehouse(c360_env.warehouse_path)
    con = duckdb.connect(str(c360_env.warehouse_path))
    con.execute("DROP TABLE pii.pii_customer_contacts")
    con.close()
    with pytest.raises(ExportError, match=r"pii.segment_export_rows cannot be read .*pii_customer_contacts.*dbt build"):
        export_segments(D2, c360_env, segments=SEGMENTS)


def test_missing_export_rows_model_is_a_clear_error(c360_env):
    build_warehouse(c360_env.warehouse_path)
    con = duckdb.connect(str(c360_env.warehouse_path))
    con.execute("DROP VIEW pii.segment_export_rows")
    con.close()
    with pytest.raises(ExportError, match=r"pii.segment_export_rows does not exist.*dbt build --select"):
        export_segments(D2, c360_env, segments=SEGMENTS)


def _record_psi(path, day, psi):
    con = duckdb.connect(str(path))
    con.execute("CREATE SCHEMA IF NOT EXISTS monitoring")
    con.execute("CREATE OR REPLACE TABLE monitoring.psi (as_of_date DATE, reference_date DATE, kind VARCHAR, "
                "name VARCHAR, psi DOUBLE, status VARCHAR, bins INTEGER, reference_rows BIGINT, current_rows BIGINT, "
                "computed_at TIMESTAMPTZ)")
    con.execute("INSERT INTO monitoring.psi VALUES (?, DATE '2025-01-01', 'score', 'churn_probability', ?, 'x', "
                "10, 100, 100, now())", [day, psi])
    con.close()


NBA_ROWS_MODEL = Path(__file__).resolve().parents[1] / "dbt_project/models/pii/next_best_action_export_rows.sql"


def build_next_best_actions(path, rows, recommender="5") -> None:
    """marts.customer_next_best_action with the given (date, customer, action, product, value, consent) rows, and the
    dbt model pii.next_best_action_export_rows over it, rendered from its own SQL like export_rows_view_sql."""
    con = duckdb.connect(str(path))
    con.execute("""CREATE OR REPLACE TABLE marts.customer_next_best_action (as_of_date DATE, customer_id VARCHAR,
        action VARCHAR, product_id VARCHAR, expected_value_eur DOUBLE, reason VARCHAR, marketing_consent BOOLEAN,
        run_id VARCHAR, churn_model_version VARCHAR, clv_model_version VARCHAR, recommender_model_version VARCHAR,
        feature_snapshot_date DATE)""")
    for day, customer, action, product, value, consent in rows:
        con.execute("INSERT INTO marts.customer_next_best_action VALUES (?, ?, ?, ?, ?, ?, ?, 'run-1', '3', '2', ?, ?)",
                    [day, customer, action, product, value, f"{action}: because {customer}", consent, recommender, day])
    template = jinja2.Environment(undefined=jinja2.StrictUndefined).from_string(NBA_ROWS_MODEL.read_text())
    refs = {"customer_next_best_action": "marts.customer_next_best_action", **REFS}
    con.execute("CREATE OR REPLACE VIEW pii.next_best_action_export_rows AS "
                + template.render(ref=refs.__getitem__, config=lambda **_: "", reader_view=lambda: "view"))
    con.close()


def test_next_best_action_is_exported_like_a_segment(warehouse):
    """The built-in export lists tonight's actions of consenting customers (consent as of the date, decided by the
    mart, and still now, from the contacts) in the manifest beside the segments: CSV and Parquet, no delta files."""
    build_next_best_actions(warehouse.warehouse_path, [
        (D2, "c1", "retain", None, 12.5, True),
        (D2, "c2", "cross_sell", "p9", 2.25, True),   # withdrew consent since (contacts below)
        (D2, "c3", "none", None, None, False),        # no action: not a row of the export
        (D2, "c4", "cross_sell", "p7", 3.0, True),
        (D1, "c5", "win_back", None, 4.0, True),      # another night
    ])
    con = duckdb.connect(str(warehouse.warehouse_path))
    con.execute("UPDATE pii.pii_customer_contacts SET marketing_consent = false WHERE customer_id = 'c2'")
    con.close()
    manifest = export_segments(D2, warehouse, segments=SEGMENTS)
    entry = manifest["segments"]["next_best_action"]
    assert set(entry["files"]) == {"csv", "parquet"}
    assert (entry["rows"], entry["members"], entry["excluded_without_consent"]) == (2, 3, 1)
    assert entry["required_consent"] == "marketing" and entry["model_versions"]["recommender"] == "5"
    assert (entry["run_id"], entry["feature_snapshot_date"]) == ("run-1", "2025-06-02")
    storage = open_storage(warehouse.export_uri)
    rows = read_csv(storage, file_key(manifest, "next_best_action", "csv"))
    assert list(rows[0]) == ["customer_id", "email", "action", "product_id", "expected_value_eur", "reason",
                             "as_of_date", "run_id", "churn_model_version", "clv_model_version",
                             "recommender_model_version", "feature_snapshot_date"]
    assert [(r["customer_id"], r["email"], r["action"], r["product_id"], r["expected_value_eur"], r["reason"])
            for r in rows] == [("c1", "c1@example.com", "retain", "", "12.5", "retain: because c1"),
                               ("c4", "c4@example.com", "cross_sell", "p7", "3", "cross_sell: because c4")]
    table = pq.read_table(io.BytesIO(storage.read_bytes(file_key(manifest, "next_best_action", "parquet"))))
    assert table.column("expected_value_eur").to_pylist() == [12.5, 3.0]
    assert verify_export(D2, warehouse) == manifest
    # like a segment: re-exported alone, or left alone (keeping its entry) when others are re-exported
    only = export_segments(D2, warehouse, segments=SEGMENTS, only=["next_best_action"])
    assert only["segments"]["next_best_action"]["export_id"] == only["export_id"]
    assert only["segments"]["loyal"] == manifest["segments"]["loyal"]
    other = export_segments(D2, warehouse, segments=SEGMENTS, only=["loyal"])
    assert other["segments"]["next_best_action"] == only["segments"]["next_best_action"]
    verify_export(D2, warehouse)


def test_next_best_action_without_recommender_or_any_action(warehouse):
    """A transactions-only night (no recommender) leaves recommender_model_version out, as the segments do; a night
    whose actions are all none still exports an empty file naming its run and models."""
    build_next_best_actions(warehouse.warehouse_path, [(D2, "c1", "none", None, None, True)], recommender=None)
    manifest = export_segments(D2, warehouse, segments=SEGMENTS)
    entry = manifest["segments"]["next_best_action"]
    assert "recommender_model_version" not in entry["columns"] and entry["rows"] == 0
    assert entry["model_versions"] == {"churn": "3", "clv": "2", "recommender": None}
    assert entry["run_id"] == "run-1" and entry["feature_snapshot_date"] == "2025-06-02"
    storage = open_storage(warehouse.export_uri)
    header = storage.read_bytes(file_key(manifest, "next_best_action", "csv")).decode().splitlines()
    assert header == [",".join(entry["columns"])]
    verify_export(D2, warehouse)


def test_next_best_action_export_needs_its_model_and_its_name(warehouse):
    """A warehouse built before the model exports the segments only; asking for the export by name says what to
    build; a segment cannot take the built-in export's name."""
    manifest = export_segments(D2, warehouse, segments=SEGMENTS)
    assert set(manifest["segments"]) == {"loyal", "service"}
    with pytest.raises(ExportError, match=r"next_best_action_export_rows.*dbt build --select"):
        export_segments(D2, warehouse, segments=SEGMENTS, only=["next_best_action"])
    clash = parse_segments({"segments": [{"name": "next_best_action", "description": "d", "where": "orders_count > 0",
                                          "required_consent": "marketing", "destination": "crm"}]})
    with pytest.raises(ExportError, match="rename the segment"):
        export_segments(D2, warehouse, segments=clash)


@pytest.mark.reliability
def test_hold_back_when_drift_is_high(warehouse):
    good = export_segments(D2, warehouse, segments=SEGMENTS)
    assert good["drift_check"]["status"] == "not_checked"
    _record_psi(warehouse.warehouse_path, D2, 0.6)
    with pytest.raises(ExportHeld, match=r"held back.*churn_probability.*--force"):
        export_segments(D2, warehouse, segments=SEGMENTS)
    assert read_manifest(open_storage(warehouse.export_uri), D2) == good
    forced = export_segments(D2, warehouse, segments=SEGMENTS, force=True)
    assert forced["drift_check"]["forced"] is True and forced["drift_check"]["status"] == "hold"

    _record_psi(warehouse.warehouse_path, D2, 0.15)  # warn only: exports go ahead
    assert export_segments(D2, warehouse, segments=SEGMENTS)["drift_check"]["status"] == "warn"


@pytest.mark.s3
def test_export_to_s3(c360_env, s3_bucket, moto_s3_server, monkeypatch):
    from c360.config import get_settings

    build_warehouse(c360_env.warehouse_path)
    monkeypatch.setenv("EXPORT_URI", f"s3://{s3_bucket}/exports")
    monkeypatch.setenv("C360_S3_ENDPOINT_URL", moto_s3_server)
    settings = get_settings()
    first = export_segments(D2, settings, segments=SEGMENTS)
    second = export_segments(D2, settings, segments=SEGMENTS)
    storage = open_storage(settings.export_uri, settings.s3_endpoint_url)
    assert verify_export(D2, settings) == second
    assert first["export_uri"] == f"s3://{s3_bucket}/exports"
    assert second["segments"]["loyal"]["files"]["csv"]["uri"].startswith(f"s3://{s3_bucket}/exports/dt=2025-06-02/run=")
    rows = read_csv(storage, file_key(second, "loyal", "csv"))
    assert [r["customer_id"] for r in rows] == ["c1", "c4"]
    keys = {f.key for f in storage.list("dt=2025-06-02")}
    assert "dt=2025-06-02/manifest.json" in keys and not any("_tmp-" in k for k in keys)


def _c360_imports() -> dict[str, set[str]]:
    """module -> the c360 modules it imports, at module level or inside functions (ast; nothing is imported)."""
    root = Path(__file__).resolve().parents[1]
    files = {".".join(f.relative_to(root).with_suffix("").parts).removesuffix(".__init__"): f
             for f in (root / "c360").rglob("*.py")}
    graph = {}
    for name, f in files.items():
        found = set()
        for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                found |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
        graph[name] = {m for m in found if m in files and m != name}
    return graph


def test_segments_exports_and_monitoring_import_no_cycle():
    """segments <- exports (query, export, cli) and monitoring: none of them can reach itself again through any
    chain of imports, including imports inside functions (issue #14)."""
    graph = _c360_imports()
    for start in ("c360.marketing.segments", "c360.marketing.exports", "c360.marketing.exports.export", "c360.marketing.exports.query", "c360.cli.segments",
                  "c360.pipeline.monitoring"):
        seen, todo = set(), [(start, (start,))]
        while todo:
            module, path = todo.pop()
            for nxt in graph[module]:
                assert nxt != start, f"import cycle: {' -> '.join((*path, nxt))}"
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append((nxt, (*path, nxt)))
