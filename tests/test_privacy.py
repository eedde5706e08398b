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

from c360.cli import erase_customer as erase_cli
from c360.ingest.load import ingest
from c360.ingest.reconcile import reconcile
from c360.marketing.exports.export import verify_export
from c360.marketing.exports.files import to_csv_bytes, to_parquet_bytes
from c360.privacy import erasure as privacy
from c360.storage import LocalStorage, sha256_bytes
from c360dev.generate import generate

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
    """A segment export laid out as c360.marketing.exports writes it: run folder + manifest with rows and checksums."""
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
    # leftovers of crashed exports: a staging folder (truncated CSV), half-written files (LocalStorage's .tmp-*)
    csv_bytes = to_csv_bytes(["customer_id", "email"], [(m[0], m[1]) for m in members])
    exports.write_bytes(f"dt={LAST}/_tmp-crashed/vip.csv", csv_bytes[: len(csv_bytes) // 2 + 40])
    exports.write_bytes(f"dt={LAST}/_tmp-clean/vip.csv", b"customer_id,email\n")
    (Path(settings.export_uri) / f"dt={LAST}/.tmp-k2j4h1").write_bytes(to_parquet_bytes(
        ["customer_id", "email"], [(m[0], m[1]) for m in members])[:300])
    (Path(settings.export_uri) / f"dt={LAST}/run=new/.tmp-vip.csv").write_bytes(csv_bytes)
    (fs / "customer_features/as_of_date=2025-10-20/.tmp-part-0.parquet-1a2b3c4d").write_bytes(
        (fs / "customer_features/as_of_date=2025-10-20/part-0.parquet").read_bytes())
    _mlflow_artifacts(Path(settings.mlflow_artifact_root), customer, [c for c, _ in contacts[:5]])
    return SimpleNamespace(settings=settings, customer=customer, cookie=cookie, day=day)


def _mlflow_artifacts(root: Path, customer: str, others: list[str]) -> None:
    """What training runs left in MLflow's artifact store, laid out as MLflow 3 does (runs and logged models):
    holdout predictions with the raw id (runs before #13) and keyed by sha256 (since), a recommender's input
    examples with ids (before #13) and its Spark StringIndexer data (the user index: a labelsArray of every id)."""
    ids = [customer, *[o for o in others if o != customer]]
    scores = pa.array([0.1 * i for i in range(len(ids))], pa.float64())
    _write_parquet(root / "1/run-old/artifacts/holdout_predictions.parquet",
                   pa.table({"customer_id": ids, "label": [1] * len(ids), "gbt": scores}))
    _write_parquet(root / "1/run-new/artifacts/holdout_predictions.parquet",
                   pa.table({"customer_key": [privacy.customer_key(c) for c in ids], "label": [0] * len(ids),
                             "gbt": scores}))
    (root / "1/run-new/artifacts/plots").mkdir(parents=True)
    (root / "1/run-new/artifacts/plots/roc.png").write_bytes(b"\x89PNG\r\n" + bytes(range(256)) * 4)
    model = root / "1/models/m-rec/artifacts"
    model.mkdir(parents=True)
    rows = [[c, f"P{i}"] for i, c in enumerate(ids)]
    (model / "input_example.json").write_text(json.dumps({"columns": ["customer_id", "product_id"], "data": rows}))
    (model / "serving_input_example.json").write_text(json.dumps(
        {"dataframe_split": {"columns": ["customer_id", "product_id"], "data": rows}}))
    (model / "MLmodel").write_text("flavors:\n  spark:\n    pyspark_version: 4.0.1\nsignature:\n  inputs: "
                                   "'[{\"name\": \"customer_id\", \"type\": \"string\"}]'\n")
    data = model / "sparkml/stages/0_StringIndexer_ab12/data/part-00000-x.snappy.parquet"
    labels = pa.table({"labelsArray": pa.array([[list(reversed(ids))]], pa.list_(pa.list_(pa.string())))})
    data.parent.mkdir(parents=True)
    pq.write_table(labels, data, compression="snappy")
    data.with_name(f".{data.name}.crc").write_bytes(b"spark checksum")


def _strings(value) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list | tuple):
        return [s for v in value for s in _strings(v)]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    return []


def _files_naming(settings, *values: str) -> list[str]:
    """Every file under the data folder that holds one of `values`: Parquet by its decoded values (compression
    hides bytes), every other file by its bytes. The landing zone (the shop's own extracts, out of scope by design:
    docs/runbooks.md) and the warehouse file (checked through SQL) aside."""
    landing, hits = Path(settings.landing_uri), []
    for path in sorted(Path(settings.data_dir).rglob("*")):
        if not path.is_file() or landing in path.parents or path == Path(settings.warehouse_path):
            continue
        if path.suffix == ".parquet":
            try:
                found = set(_strings(pq.read_table(path).to_pylist()))
            except pa.ArrowInvalid:
                found = {v for v in values if v.encode() in path.read_bytes()}
        else:
            data = path.read_bytes()
            found = {v for v in values if v.encode() in data}
        if found & set(values):
            hits.append(str(path.relative_to(settings.data_dir)))
    return hits


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
    assert {f.area for f in preview.files} == {"feature_store", "scores", "exports", "mlflow"}
    assert sql(settings, "SELECT count(*) FROM privacy.erasure_log") == [(0,)]

    done = privacy.erase_customer(shop.customer, settings)
    assert done.tables == preview.tables
    assert [(f.uri, f.rows, f.action) for f in done.files] == [(f.uri, f.rows, f.action) for f in preview.files]


@pytest.mark.reliability
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
    erase_cli.add_arguments(parser)
    before = _fingerprint(settings.data_dir)

    assert erase_cli.run(parser.parse_args([shop.customer])) == 2  # no terminal, no --yes: refuses
    assert _fingerprint(settings.data_dir) == before
    assert erase_cli.run(parser.parse_args([shop.customer, "--yes"])) == 0
    assert shop.customer not in capsys.readouterr().out  # the summary names the hash, not the id

    assert erase_cli.run(parser.parse_args([shop.customer, "--yes", "--json"])) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["tables"] == {} and again["files"] == [] and len(again["previously_erased"]) == 1
    assert erase_cli.run(parser.parse_args(["  ", "--yes"])) == 1


@pytest.mark.reliability
def test_after_erasure_no_file_under_the_data_folder_names_the_customer(shop):
    settings, customer = shop.settings, shop.customer
    key = privacy.customer_key(customer)
    assert _files_naming(settings, customer, key)  # the fixture put them in MLflow, exports, leftovers...

    result = privacy.erase_customer(customer, settings)

    assert result.unresolved == []
    assert _files_naming(settings, customer, key) == []
    assert _tables_naming(settings, customer) == {}
    # MLflow: holdout rows of both formats dropped, other customers' rows kept
    root = Path(settings.mlflow_artifact_root)
    old = pq.read_table(root / "1/run-old/artifacts/holdout_predictions.parquet").to_pydict()
    new = pq.read_table(root / "1/run-new/artifacts/holdout_predictions.parquet").to_pydict()
    assert len(old["customer_id"]) == len(new["customer_key"]) == 5 and customer not in old["customer_id"]
    example = json.loads((root / "1/models/m-rec/artifacts/input_example.json").read_text())
    assert len(example["data"]) == 5 and customer not in {r[0] for r in example["data"]}
    # the user index keeps its length and order (the model's other users keep their index); no stale checksum
    data = next((root / "1/models/m-rec/artifacts/sparkml").rglob("*.parquet"))
    labels = pq.read_table(data).column("labelsArray").to_pylist()[0][0]
    assert len(labels) == 6 and labels[-1].startswith("erased-") and customer not in labels
    assert not data.with_name(f".{data.name}.crc").exists()
    assert (root / "1/run-new/artifacts/plots/roc.png").exists()
    # exports: staging of crashed runs and half-written files are gone, published files still verify
    export_root = Path(settings.export_uri)
    assert not list(export_root.rglob("_tmp-*")) and not list(export_root.rglob(".tmp-*"))
    assert not list(Path(settings.feature_store_dir).rglob(".tmp-*"))
    verify_export(LAST, settings)


@pytest.mark.reliability
def test_dry_run_says_would_and_never_claims_a_change(shop, capsys):
    settings = shop.settings
    parser = argparse.ArgumentParser()
    erase_cli.add_arguments(parser)
    before = _fingerprint(settings.data_dir)

    assert erase_cli.run(parser.parse_args([shop.customer, "--dry-run"])) == 0

    out = capsys.readouterr().out
    assert _fingerprint(settings.data_dir) == before
    assert "would rewrite this file" in out and "would delete this folder" in out
    assert "mlflow: " in out and "_tmp-crashed" in out and ".tmp-k2j4h1" in out
    assert " rewritten)" not in out and " deleted)" not in out
    assert erase_cli.run(parser.parse_args([shop.customer, "--yes"])) == 0
    out = capsys.readouterr().out
    assert "(file rewritten)" in out and "(folder deleted)" in out and "(would " not in out


def test_a_file_the_erasure_cannot_rewrite_is_reported_and_fails_the_command(shop, capsys):
    settings = shop.settings
    notes = Path(settings.mlflow_artifact_root) / "1/run-new/artifacts/notes.txt"
    notes.write_text(f"worst churn miss: customer {shop.customer} (ask CRM)\n")
    parser = argparse.ArgumentParser()
    erase_cli.add_arguments(parser)

    assert erase_cli.run(parser.parse_args([shop.customer, "--yes"])) == 1

    out = capsys.readouterr().out
    assert "notes.txt" in out and "NOT removed: still names the customer" in out
    assert shop.customer in notes.read_text()  # reported, not guessed at
    assert _files_naming(settings, shop.customer) == ["mlflow/artifacts/1/run-new/artifacts/notes.txt"]


@pytest.mark.reliability
def test_erasure_follows_the_identity_graph_to_every_customer_id_of_the_person(shop):
    """A guest checkout the identity graph merged into the customer's person (marts.person_members of the last dbt
    build) is erased with them, everywhere the erasure reaches; a stranger in a person of their own stays."""
    settings, customer = shop.settings, shop.customer
    in_exports = sql(settings, """SELECT customer_id FROM raw.customers WHERE email IS NOT NULL ORDER BY 1
                                  LIMIT 20""")  # the ids the fixture listed in the exports
    with_orders = {r[0] for r in sql(settings, "SELECT DISTINCT customer_id FROM raw.transactions")}
    guest = next(c for (c,) in in_exports if c != customer and c in with_orders)  # rows in every area
    stranger = next(c for (c,) in in_exports if c not in (customer, guest))
    person = "p_" + privacy.customer_key(customer)[:24]
    con = duckdb.connect(str(settings.warehouse_path))
    try:
        con.execute("CREATE TABLE marts.person_members (person_id VARCHAR, customer_id VARCHAR, is_anchor BOOLEAN)")
        con.executemany("INSERT INTO marts.person_members VALUES (?, ?, ?)", [
            (person, customer, True), (person, guest, False),
            ("p_" + privacy.customer_key(stranger)[:24], stranger, True)])
    finally:
        con.close()
    keys = [privacy.customer_key(customer), privacy.customer_key(guest)]
    assert _tables_naming(settings, guest) and _files_naming(settings, guest, keys[1])

    preview = privacy.erase_customer(guest, settings, dry_run=True)  # named by the guest id: the same person
    assert (preview.person_id, preview.member_keys) == (person, keys[::-1])
    alone = privacy.erase_customer(guest, settings, dry_run=True, follow_person=False)
    assert alone.member_keys == [keys[1]] and alone.tables["raw.transactions"] < preview.tables["raw.transactions"]

    result = privacy.erase_customer(customer, settings)

    assert result.member_keys == keys and result.unresolved == []
    for who, key in zip((customer, guest), keys, strict=True):
        assert _tables_naming(settings, who) == {}, who
        assert _files_naming(settings, who, key) == [], who
    assert _tables_naming(settings, stranger) != {}
    assert sql(settings, "SELECT customer_id FROM marts.person_members") == [(stranger,)]
    log_rows = sql(settings, "SELECT erasure_id, customer_key, requested_key, person_id, completed_at IS NOT NULL "
                             "FROM privacy.erasure_log ORDER BY customer_key")
    assert len({r[0] for r in log_rows}) == 1 and sorted(r[1] for r in log_rows) == sorted(keys)
    assert {(r[2], r[3], r[4]) for r in log_rows} == {(keys[0], person, True)}
    logged = json.dumps(sql(settings, "SELECT * FROM privacy.erasure_log"), default=str)
    assert customer not in logged and guest not in logged
    verify_export(LAST, settings)
    # the guest's re-landed order is kept out like the customer's own
    LocalStorage(settings.landing_uri).write_bytes(
        "transactions/dt=2025-10-21/late.csv",
        f"order_id,customer_id,ordered_at,amount\nz1,{guest},2025-10-21T09:00:00Z,12\n".encode())
    assert dict(ingest(date(2025, 10, 21), settings).entities["transactions"].reasons) == {"erased_customer": 1}
