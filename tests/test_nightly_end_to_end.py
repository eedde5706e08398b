"""The whole nightly chain through real Airflow on a tiny generated shop, for two consecutive dates:
ingest -> dbt -> (first night: train, since there is no champion) -> score -> dbt scores/segments -> drift
check -> consent-aware exports -> run report. Then a rerun of the second date changes nothing users see.

Slow by nature (Airflow, dbt, two Spark jobs): one module-scoped run, read by several tests.
"""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
from datetime import date, timedelta

import duckdb
import pytest

from c360.config import get_settings
from c360.marketing.exports.export import date_prefix, read_manifest, verify_export
from c360.storage import open_storage

# one module-scoped chain of three nightly runs and a first training: minutes, not seconds
pytestmark = [pytest.mark.integration, pytest.mark.timeout(2400)]

CUSTOMERS, DAYS, SEED = 1200, 200, 11
START = date(2025, 10, 1)
DAY2 = START + timedelta(days=DAYS - 1)  # the last landed date
DAY1 = DAY2 - timedelta(days=1)
# short label horizons so 200 days hold labelled snapshots to train and evaluate on; quick first-night training
ENV = {
    "C360_CHURN_HORIZON_DAYS": "30",
    "C360_VALUE_HORIZON_DAYS": "60",
    "C360_BOOTSTRAP_TRAIN_ARGS": "--rec-grid none --gbt-iterations 15 --train-snapshots 2",
    # No C360_FIRST_CHAMPION override: each model has a baseline that may serve when its ML candidate misses its
    # floors (churn: recency, CLV: BG/NBD or run rate, recommender: popularity; docs/models.md).
    "SPARK_MASTER": "local[2]",
}


def run_c360(args: list[str], env: dict) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "c360.cli", *args], env=env, capture_output=True, text=True,
                          timeout=1800)
    assert proc.returncode == 0, f"c360 {' '.join(args)} failed:\n{proc.stdout[-6000:]}\n{proc.stderr[-6000:]}"
    return proc


def warehouse_rows(settings, sql: str, params=None) -> list[tuple]:
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        return con.execute(sql, params or []).fetchall()


def export_files(settings, day: date) -> dict[str, bytes]:
    """Every exported file of the date by segment/kind (the run folder name is run metadata: left out)."""
    storage = open_storage(settings.export_uri)
    manifest = read_manifest(storage, day)
    return {f"{seg}/{kind}": storage.read_bytes(f"{date_prefix(day)}/{f['path']}")
            for seg, entry in manifest["segments"].items() for kind, f in entry["files"].items()}


USER_TABLES = {
    "marts.customer_360": "customer_id",
    "marts.customer_scores": "as_of_date, customer_id",
    "marts.customer_recommendations": "as_of_date, customer_id, rank",
    "marts.segment_members": "as_of_date, segment, customer_id",
    "marts.segment_changes": "as_of_date, segment, customer_id",
    "feature_store.customer_features": "as_of_date, customer_id",
}
RUN_METADATA = {"scored_at", "loaded_at", "_loaded_at", "export_id", "generated_at"}


def user_tables(settings) -> dict[str, list[tuple]]:
    out = {}
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        for table, order in USER_TABLES.items():
            cols = [r[0] for r in con.execute(f"describe {table}").fetchall() if r[0] not in RUN_METADATA]
            out[table] = con.execute(f"select {', '.join(cols)} from {table} order by {order}").fetchall()
    return out


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    root = tmp_path_factory.mktemp("chain")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("C360_DATA_DIR", str(root / "data"))
        for var in ("LANDING_URI", "WAREHOUSE_PATH", "EXPORT_URI", "C360_FEATURE_STORE_DIR", "C360_SCORES_DIR",
                    "C360_REPORTS_DIR", "MLFLOW_TRACKING_URI", "C360_MLFLOW_ARTIFACT_ROOT", "C360_S3_ENDPOINT_URL",
                    "C360_PSI_REFERENCE_DATE", "C360_FIRST_CHAMPION"):
            mp.delenv(var, raising=False)
        mp.setenv("AIRFLOW_HOME", str(root / "airflow"))
        for key, value in ENV.items():
            mp.setenv(key, value)
        env = dict(os.environ)
        settings = get_settings()
        run_c360(["generate", "--customers", str(CUSTOMERS), "--days", str(DAYS), "--seed", str(SEED),
                  "--start", START.isoformat()], env)
        first = run_c360(["nightly", "--date", DAY1.isoformat()], env)
        second = run_c360(["nightly", "--date", DAY2.isoformat()], env)
        state = {"tables": user_tables(settings), "exports": export_files(settings, DAY2)}
        rerun = run_c360(["nightly", "--date", DAY2.isoformat()], env)
        yield {"settings": settings, "env": env, "first": first, "second": second, "rerun": rerun,
               "before_rerun": state}


def test_first_night_trains_champions_then_scores_every_customer(chain):
    settings = chain["settings"]
    # the task logs are in the files c360 nightly names (its console shows one line per task)
    score_logs = {day: (settings.logs_dir / "nightly" / day.isoformat() / "c360_score.log").read_text()
                  for day in (DAY1, DAY2)}
    assert "No @champion for" in score_logs[DAY1]
    assert "No @champion for" not in score_logs[DAY2]  # trained once only
    assert "c360_score.ensure_champions" in chain["first"].stdout and "c360_score.score" in chain["first"].stdout
    for day in (DAY1, DAY2):
        snapshot, buyers, scored, churn_scored, with_recs = warehouse_rows(settings, """
            select (select count(*) from feature_store.customer_features where as_of_date = $1),
                   (select count(*) from feature_store.customer_features where as_of_date = $1 and orders_count > 0),
                   (select count(*) from marts.customer_scores where as_of_date = $1 and run_id is not null),
                   -- churn is defined for customers who have bought (docs/models.md)
                   (select count(*) from marts.customer_scores where as_of_date = $1
                      and churn_probability between 0 and 1 and churn_decile between 1 and 10),
                   (select count(distinct customer_id) from marts.customer_recommendations where as_of_date = $1)
        """, [day])[0]
        assert snapshot > buyers > 0, day
        assert scored == snapshot and with_recs == snapshot and churn_scored == buyers, day
        # the churn champion's own reasons: every customer of the riskiest tenth has at least one (their log-odds are
        # above the average customer's, so some feature raises them); customers without a churn score have none
        top_without, unscored_with = warehouse_rows(settings, """
            select count(*) filter (where churn_decile = 10 and churn_reason_1 is null),
                   count(*) filter (where churn_probability is null and churn_reason_1 is not null)
            from marts.customer_scores where as_of_date = $1""", [day])[0]
        assert (top_without, unscored_with) == (0, 0), day
    # the drift check ran against the champion's training snapshot
    assert warehouse_rows(settings, "select count(*) from monitoring.psi where as_of_date = $1", [DAY2])[0][0] > 0


def test_first_night_gate_decisions_without_any_override(chain):
    """Every first champion came through its gates, with no C360_FIRST_CHAMPION override: churn is served by the
    recency baseline (the GBT misses its floors on this short history); the recommender by ALS or, when ALS misses
    its floor against popularity (as on 200 generated days), by the popularity baseline, which says why."""
    from mlflow import MlflowClient

    from ml.registry import CHAMPION

    uri = chain["settings"].mlflow_tracking_uri
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    tags = {name: client.get_model_version_by_alias(name, CHAMPION).tags for name in ("churn", "clv", "recommender")}
    for name in ("churn", "clv", "recommender"):
        assert "accepted_without_gates" not in tags[name], f"{name} bypassed the gates: {tags[name]}"
        assert tags[name]["validation_status"] == "passed", tags[name].get("validation_summary")
        assert tags[name]["validation_champion_version"] == "none"  # the first champion: floors (or none) only
    assert tags["churn"]["serving"] == "recency" and "did not beat the baselines' floors" in tags["churn"]["serving_note"]
    assert tags["clv"]["serving"] in {"model", "bgnbd", "run_rate"}
    rec = tags["recommender"]
    assert rec["serving"] in {"model", "popularity"}, rec
    if rec["serving"] == "popularity":
        assert "did not beat the baselines' floors" in rec["serving_note"] and "ndcg_at_10" in rec["serving_note"]
    assert "C360_FIRST_CHAMPION=accept" not in (chain["settings"].logs_dir / "nightly" / DAY1.isoformat()
                                                / "c360_score.log").read_text()


def test_exports_for_both_dates_have_valid_manifests_and_honour_consent(chain):
    settings = chain["settings"]
    for day in (DAY1, DAY2):
        manifest = verify_export(day, settings)  # bytes, sha256 and row counts match the manifest
        assert manifest["as_of_date"] == day.isoformat() and manifest["segments"]
        for name, entry in manifest["segments"].items():
            assert entry["model_versions"] and entry["feature_snapshot_date"] == day.isoformat(), name
    # no customer without marketing consent on that date is in a segment that requires it, nor has an email anywhere
    manifest = read_manifest(open_storage(settings.export_uri), DAY2)
    files = export_files(settings, DAY2)
    unconsented = {r[0] for r in warehouse_rows(
        settings, "select customer_id from feature_store.customer_features where as_of_date = $1 "
                  "and not marketing_consent", [DAY2])}
    assert unconsented
    needs_consent = 0
    for seg, entry in manifest["segments"].items():
        rows = list(csv.DictReader(io.StringIO(files[f"{seg}/csv"].decode())))
        if entry["required_consent"] == "marketing":
            assert not {r["customer_id"] for r in rows} & unconsented, seg
            needs_consent += len(rows)
        assert not [r for r in rows if r["customer_id"] in unconsented and r.get("email")], seg
    assert needs_consent, "no consent-requiring segment had members: the consent check proved nothing"


def test_deltas_are_the_difference_between_the_two_nights(chain):
    settings = chain["settings"]
    manifest = read_manifest(open_storage(settings.export_uri), DAY2)
    members = {}
    for day in (DAY1, DAY2):
        for seg, cid in warehouse_rows(settings, "select segment, customer_id from marts.segment_members "
                                                 "where as_of_date = $1", [day]):
            members.setdefault((day, seg), set()).add(cid)
    files = export_files(settings, DAY2)
    checked = 0
    for seg in manifest["segments"]:
        if "entered" not in manifest["segments"][seg]["files"]:
            continue  # the built-in next_best_action export has no delta files (docs/exports.md)
        before, after = members.get((DAY1, seg), set()), members.get((DAY2, seg), set())
        changes = warehouse_rows(settings, "select change, customer_id from marts.segment_changes "
                                           "where as_of_date = $1 and segment = $2", [DAY2, seg])
        assert {c for ch, c in changes if ch == "entered"} == after - before, seg
        assert {c for ch, c in changes if ch == "exited"} == before - after, seg
        entered_file = list(csv.DictReader(io.StringIO(files[f"{seg}/entered"].decode())))
        assert len(entered_file) == manifest["segments"][seg]["entered"]
        checked += bool(after ^ before)
    assert checked, "no segment changed between the two nights: the delta check proved nothing"


def test_run_report_is_written_and_its_path_printed(chain):
    settings = chain["settings"]
    out = chain["second"].stdout
    html = settings.reports_dir / f"{DAY2.isoformat()}.html"
    assert f"Run report: {html}" in out and html.exists()
    text = html.read_text()
    for stage in ("ingest transactions", "dbt", "score", "dbt scores + segments", "export"):
        assert stage in text, stage


def test_run_report_summary_on_real_nights(chain):
    """The summary (docs/report.md) on real nights: segment changes against the night before, the night's
    next-best actions, champions promoted by the first night only."""
    import json

    settings = chain["settings"]
    first, second = ({**json.loads((settings.reports_dir / f"{d.isoformat()}.json").read_text())["summary"]}
                     for d in (DAY1, DAY2))
    assert second["run"]["available"] and second["run"]["failed"] == [] and second["status"] in ("ok", "attention")
    members = dict(warehouse_rows(settings, "select segment || '@' || as_of_date, count(*) from marts.segment_members "
                                            "group by 1"))
    changes = dict(warehouse_rows(settings, "select segment || '@' || change, count(*) from marts.segment_changes "
                                            "where as_of_date = $1 group by 1", [DAY2]))
    segs = second["segments"]
    assert segs["previous_date"] == DAY1.isoformat() and segs["segments"]
    for r in segs["segments"]:
        assert r["members"] == members.get(f"{r['segment']}@{DAY2}", 0), r
        assert r["previous_members"] == members.get(f"{r['segment']}@{DAY1}", 0), r
        assert (r["entered"], r["exited"]) == (changes.get(f"{r['segment']}@entered", 0),
                                               changes.get(f"{r['segment']}@exited", 0)), r
    assert first["segments"]["previous_date"] is None  # the first night: nothing to compare with, and says so
    actions = warehouse_rows(settings, "select count(*) from marts.customer_next_best_action where as_of_date = $1",
                             [DAY2])[0][0]
    assert second["next_best_action"]["available"] and second["next_best_action"]["customers"] == actions > 0
    assert {m["name"] for m in second["models"]["models"] if m["available"]} >= {"churn", "clv"}
    assert second["models"]["promoted_tonight"] == []  # the report of the rerun: nothing promoted then
    assert {"churn", "clv"} <= set(first["models"]["promoted_tonight"])  # the first night trained them


@pytest.mark.reliability
def test_rerunning_a_date_changes_no_mart_and_no_export(chain):
    settings = chain["settings"]
    assert user_tables(settings) == chain["before_rerun"]["tables"]
    assert export_files(settings, DAY2) == chain["before_rerun"]["exports"]
