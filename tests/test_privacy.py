"""Erasing a customer: gone from every warehouse table, Parquet copy and export; re-landed rows stay out."""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
from datetime import date
from pathlib import Path
from types import SimpleNamespace

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from c360 import privacy
from c360.exports.export import verify_export
from c360.exports.files import to_csv_bytes, to_parquet_bytes
from c360.generate import generate
from c360.ingest.load import ingest
from c360.ingest.reconcile import reconcile
from c360.storage import LocalStorage, sha256_bytes

START, LAST = date(2025, 10, 1), date(2025, 10, 20)
OTHER = "SHARED-DEVICE-NEIGHBOUR"


@pytest.fixture(scope="module")
def shop_landing(tmp_path_factory):
    """A tiny generated shop (landing zone only), made once and copied into each test's environment."""
    root = tmp_path_factory.mktemp("shop")
    generate(out=str(root / "landing"), customers=150, days=(LAST - START).days + 1, seed=3,
             start=START.isoformat(), truth_dir=root / "truth")
    return root / "landing"


def sql(settings, query: str, params=None) -> list[tuple]:
    con = duckdb.connect(str(settings.warehouse_path), read_only=True)
    try:
        return con.execute(query, params or []).fetchall()
    finally:
        con.close()


def _pick_customer(con) -> tuple[str, str, date]:
    """A customer with orders and a logged-in cookie that also has anonymous events (the interesting case)."""
    row = con.execute(
        """
        SELECT t.customer_id, e.anonymous_id, max(t._dt)
        FROM raw.transactions t
        JOIN raw.tracking_events e ON e.customer_id = t.customer_id
        WHERE e.anonymous_id IN (SELECT anonymous_id FROM raw.tracking_events WHERE customer_id IS NULL)
          AND e.anonymous_id NOT IN (SELECT anonymous_id FROM raw.tracking_events
                                     WHERE customer_id IS NOT NULL AND customer_id <> t.customer_id)
        GROUP BY 1, 2 ORDER BY count(*) DESC, 1 LIMIT 1
        """
    ).fetchall()
    assert row, "the generated shop has no customer with a logged-in cookie"
    return row[0]


def _write_parquet(path: Path, table: pa.Table) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, compression="zstd")


def _export(storage: LocalStorage, day: date, run: str, rows: list[tuple], publish: bool = True) -> None:
    """A segment export laid out as c360.exports writes it: run folder + manifest with rows and checksums."""
    cols = ["customer_id", "email", "segment", "churn_probability", "as_of_date"]
    delta_cols = ["customer_id", "email", "segment", "change", "as_of_date", "run_id"]
    entered = [(r[0], r[1], "vip", "entered", day, "run-1") for r in rows]
    files = {"csv": ("vip.csv", to_csv_bytes(cols, rows), len(rows)),
             "parquet": ("vip.parquet", to_parquet_bytes(cols, rows), len(rows)),
             "entered": ("vip.entered.csv", to_csv_bytes(delta_cols, entered), len(entered)),
             "exited": ("vip.exited.csv", to_csv_bytes(delta_cols, []), 0)}
    entry = {"export_id": run, "rows": len(rows), "members": len(rows) + 2, "entered": len(entered), "exited": 0,
             "files": {}}
    for kind, (name, data, n) in files.items():
        key = f"dt={day}/run={run}/{name}"
        storage.write_bytes(key, data)
        entry["files"][kind] = {"path": f"run={run}/{name}", "uri": storage.uri_of(key), "rows": n,
                                "bytes": len(data), "sha256": sha256_bytes(data)}
    if publish:
        manifest = {"manifest_version": 1, "as_of_date": day.isoformat(), "export_id": run, "segments": {"vip": entry}}
        storage.write_bytes(f"dt={day}/manifest.json", json.dumps(manifest).encode())


@pytest.fixture
def shop(c360_env, shop_landing):
    """Ingested shop + stand-ins for what dbt, scoring and exports would have written about one customer."""
    settings = c360_env
    shutil.copytree(shop_landing, settings.landing_uri)
    ingest(LAST, settings)
    con = duckdb.connect(str(settings.warehouse_path))
    try:
        customer, cookie, day = _pick_customer(con)
    finally:
        con.close()
    # bad lines naming the customer, landed in their own partition: one typed-bad row, one malformed line
    landing = LocalStorage(settings.landing_uri)
    landing.write_bytes(f"transactions/dt={day}/extra.csv", (
        "order_id,customer_id,ordered_at,amount\n"
        f"x1,{customer},not-a-time,5\n"
        f"x2,{customer},2025-10-01T10:00:00Z\n"
        "x3,SOMEONE-ELSE,not-a-time,5\n").encode())
    ingest(day, settings)

    con = duckdb.connect(str(settings.warehouse_path))
    try:
        con.execute("CREATE SCHEMA marts; CREATE SCHEMA intermediate; CREATE SCHEMA feature_store; CREATE SCHEMA pii")
        # dbt-like models: sessions (with a shared-device row of someone else), an alias column, an email-only table
        con.execute("""CREATE TABLE marts.fct_sessions AS
                       SELECT anonymous_id, customer_id, count(*) AS events FROM raw.tracking_events GROUP BY ALL""")
        con.execute("INSERT INTO marts.fct_sessions VALUES (?, ?, 1)", [cookie, OTHER])
        con.execute("""CREATE TABLE intermediate.int_session_states AS
                       SELECT anonymous_id, customer_id AS logged_in_customer_id, occurred_at FROM raw.tracking_events""")
        con.execute("""CREATE TABLE feature_store.customer_features AS
                       SELECT customer_id, DATE '2025-10-20' AS as_of_date, count(*) AS orders_count
                       FROM raw.transactions GROUP BY 1""")
        con.execute("CREATE TABLE pii.newsletter AS SELECT DISTINCT upper(email) AS email FROM raw.customers")
        con.execute("CREATE VIEW marts.v_customers AS SELECT * FROM raw.customers")
        features = con.sql("SELECT customer_id, orders_count FROM feature_store.customer_features "
                           "ORDER BY 1").to_arrow_table()
        events = con.sql("SELECT anonymous_id, customer_id, event_type FROM raw.tracking_events "
                         "ORDER BY event_id").to_arrow_table()
        contacts = con.execute("SELECT customer_id, email FROM raw.customers WHERE email IS NOT NULL "
                               "ORDER BY 1").fetchall()
    finally:
        con.close()

    fs, scores = Path(settings.feature_store_dir), Path(settings.scores_dir)
    _write_parquet(fs / "customer_features/as_of_date=2025-10-20/part-0.parquet", features)
    others = features.filter(pa.compute.not_equal(features["customer_id"], customer))
    _write_parquet(fs / "customer_features/as_of_date=2025-10-19/part-0.parquet", others)
    _write_parquet(fs / "interactions/part-0.parquet", events)
    score_file = scores / "scores/dt=2025-10-20/part-00000.parquet"
    _write_parquet(score_file, features.rename_columns(["customer_id", "churn_decile"]))
    score_file.with_name(f".{score_file.name}.crc").write_bytes(b"spark checksum")

    exports = LocalStorage(settings.export_uri)
    members = [(cid, email, "vip", 0.5, LAST) for cid, email in contacts[:20]]
    if customer not in [m[0] for m in members]:
        members.append((customer, None, "vip", 0.9, LAST))
    _export(exports, LAST, "new", members)
    _export(exports, LAST, "old", members, publish=False)  # the previous run, kept for readers
    _export(exports, date(2025, 10, 19), "r19", [m for m in members if m[0] != customer])
    return SimpleNamespace(settings=settings, customer=customer, cookie=cookie, day=day)


def _fingerprint(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _tables_naming(settings, value: str) -> dict[str, int]:
    """Every table and text column of the warehouse (privacy.* aside) that still holds `value`."""
    hits = {}
    columns = sql(settings, """SELECT c.table_schema, c.table_name, c.column_name FROM information_schema.columns c
                              JOIN information_schema.tables t USING (table_catalog, table_schema, table_name)
                              WHERE t.table_type = 'BASE TABLE' AND c.data_type = 'VARCHAR'
                                AND c.table_schema <> 'privacy'""")
    for schema, table, column in columns:
        n = sql(settings, f'SELECT count(*) FROM "{schema}"."{table}" WHERE contains("{column}", ?)', [value])[0][0]
        if n:
            hits[f"{schema}.{table}.{column}"] = n
    return hits


def _parquet_ids(path: Path, column: str = "customer_id") -> list:
    return pq.ParquetFile(path).read(columns=[column]).column(column).to_pylist()


def test_dry_run_changes_nothing_and_counts_what_the_erasure_removes(shop):
    settings = shop.settings
    before = _fingerprint(settings.data_dir)

    preview = privacy.erase_customer(shop.customer, settings, dry_run=True)

    assert _fingerprint(settings.data_dir) == before
    assert preview.tables["raw.transactions"] > 0 and preview.tables["marts.fct_sessions"] > 0
    assert preview.cookies >= 1 and preview.quarantine_scrubbed >= 2  # the two bad lines in extra.csv
    assert {f.area for f in preview.files} == {"feature_store", "scores", "exports"}
    assert sql(settings, "SELECT count(*) FROM privacy.erasure_log") == [(0,)]

    done = privacy.erase_customer(shop.customer, settings)
    assert done.tables == preview.tables
    assert [(f.uri, f.rows, f.action) for f in done.files] == [(f.uri, f.rows, f.action) for f in preview.files]


def test_erasure_removes_the_customer_everywhere_and_logs_only_a_hash(shop):
    settings, customer, cookie = shop.settings, shop.customer, shop.cookie
    landed_before = reconcile(settings)
    untouched = Path(settings.feature_store_dir) / "customer_features/as_of_date=2025-10-19/part-0.parquet"
    untouched_bytes = untouched.read_bytes()
    features_before = _parquet_ids(Path(settings.feature_store_dir) /
                                   "customer_features/as_of_date=2025-10-20/part-0.parquet")

    result = privacy.erase_customer(customer, settings)

    # warehouse: no text column anywhere names the customer; their cookie's anonymous events are gone too
    assert _tables_naming(settings, customer) == {}
    assert sql(settings, "SELECT count(*) FROM raw.tracking_events WHERE anonymous_id = ?", [cookie]) == [(0,)]
    assert sql(settings, "SELECT customer_id FROM marts.fct_sessions WHERE anonymous_id = ?", [cookie]) == [(OTHER,)]
    assert result.tables["intermediate.int_session_states"] > 0  # logged_in_customer_id: an alias column
    assert result.tables["pii.newsletter"] >= 1  # an email-only table, matched by email
    # the audit still reconciles: the raw rows became tombstones with file and line, no record text
    after = reconcile(settings)  # raises unless every file still reconciles
    assert after["landed"] == landed_before["landed"]
    assert after["loaded"] == landed_before["loaded"] - sum(result.tombstones.values())
    tombstones = sql(settings, "SELECT count(*), count(record), min(detail) FROM raw.quarantine "
                               "WHERE reason = 'erased_customer'")
    assert tombstones[0][0] == sum(result.tombstones.values()) + 1 and tombstones[0][1] == 0
    assert tombstones[0][2].startswith("customer erased on ")
    # the bad lines that named them lost their text; someone else's did not
    assert sql(settings, "SELECT reason, record IS NULL FROM raw.quarantine WHERE source_file LIKE '%extra.csv' "
                         "ORDER BY source_line") == [("erased_customer", True), ("malformed_record", True),
                                                     ("invalid_timestamp", False)]
    # the log holds the hash, never the id
    log_rows = sql(settings, "SELECT customer_key, rows_deleted, completed_at FROM privacy.erasure_log")
    assert len(log_rows) == 1 and log_rows[0][0] == hashlib.sha256(customer.encode()).hexdigest()
    assert json.loads(log_rows[0][1]) == result.tables and log_rows[0][2] is not None
    assert customer not in json.dumps(sql(settings, "SELECT * FROM privacy.erasure_log"), default=str)
    assert result.compacted is not None

    # Parquet: rewritten without them, other rows as they were; files without them untouched
    fs = Path(settings.feature_store_dir)
    assert _parquet_ids(fs / "customer_features/as_of_date=2025-10-20/part-0.parquet") == \
        [c for c in features_before if c != customer]
    assert untouched.read_bytes() == untouched_bytes
    assert cookie not in _parquet_ids(fs / "interactions/part-0.parquet", "anonymous_id")
    score_file = Path(settings.scores_dir) / "scores/dt=2025-10-20/part-00000.parquet"
    assert customer not in _parquet_ids(score_file)
    assert not score_file.with_name(f".{score_file.name}.crc").exists()

    # exports: files and manifest rewritten consistently, the unpublished previous run deleted
    manifest = verify_export(LAST, settings)
    assert manifest["segments"]["vip"]["rows"] == manifest["segments"]["vip"]["files"]["csv"]["rows"]
    export_root = Path(settings.export_uri)
    assert not (export_root / f"dt={LAST}/run=old").exists()
    for path in export_root.rglob("*.csv"):
        assert customer not in path.read_text()
    assert customer not in _parquet_ids(export_root / f"dt={LAST}/run=new/vip.parquet")
    verify_export(date(2025, 10, 19), settings)


def test_relanded_rows_of_an_erased_customer_are_quarantined_without_their_text(shop):
    settings, customer = shop.settings, shop.customer
    privacy.erase_customer(customer, settings)

    result = ingest(shop.day, settings)  # reloads every file of the customer's partition

    assert result.entities["transactions"].reasons["erased_customer"] >= 1
    assert _tables_naming(settings, customer) == {}
    assert sql(settings, "SELECT count(*) FROM raw.quarantine WHERE reason = 'erased_customer' "
                         "AND record IS NOT NULL") == [(0,)]
    # a malformed line naming them keeps its reason but not its text
    assert sql(settings, "SELECT reason, record IS NULL FROM raw.quarantine WHERE source_file LIKE '%extra.csv' "
                         "ORDER BY source_line") == [("erased_customer", True), ("malformed_record", True),
                                                     ("invalid_timestamp", False)]
    totals = reconcile(settings)
    assert totals["landed"] == totals["loaded"] + totals["quarantined"]

    # a new file in a later partition: the same
    LocalStorage(settings.landing_uri).write_bytes(
        "transactions/dt=2025-10-21/late.csv",
        f"order_id,customer_id,ordered_at,amount\nz1, {customer} ,2025-10-21T09:00:00Z,12\n".encode())
    later = ingest(date(2025, 10, 21), settings)
    assert dict(later.entities["transactions"].reasons) == {"erased_customer": 1}
    reconcile(settings, date(2025, 10, 21))


def test_cli_asks_for_confirmation_and_a_rerun_finishes_cleanly(shop, capsys):
    settings = shop.settings
    parser = argparse.ArgumentParser()
    privacy.add_arguments(parser)
    before = _fingerprint(settings.data_dir)

    assert privacy.run(parser.parse_args([shop.customer])) == 2  # no terminal, no --yes: refuses
    assert _fingerprint(settings.data_dir) == before
    assert privacy.run(parser.parse_args([shop.customer, "--yes"])) == 0
    assert shop.customer not in capsys.readouterr().out  # the summary names the hash, not the id

    assert privacy.run(parser.parse_args([shop.customer, "--yes", "--json"])) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["tables"] == {} and again["files"] == [] and len(again["previously_erased"]) == 1
    assert privacy.run(parser.parse_args(["  ", "--yes"])) == 1
