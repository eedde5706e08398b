"""One dbt project, two warehouses (#16): the tiny test shop built on DuckDB and on Spark SQL (dbt-spark, session
method, local Spark) from the same landed rows gives the same tables, row for row.

Two nights, so the second builds every incremental model incrementally (replace_window, replace_dates,
delete+insert, which on Spark rewrite date partitions: macros/strategies/spark.sql), with scores published between
the nights and segment definitions, so the score, segment and next-best-action marts have rows. On the Spark side
the raw tables come from the ingestion's ledger through c360.ingest.spark_publish (as `c360 ingest` does with
C360_WAREHOUSE=spark), and the Spark tables are read back through the readers' connection
(c360.pipeline.spark_warehouse.reader), which the feature-store export and the segment exports then use too.

`make test-spark-warehouse` runs this module alone; `make test` runs it with the rest.
"""

from __future__ import annotations

import json
import math
import os
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest

from c360.config import get_settings
from c360.marketing.segments import load_segments, segments_dbt_var
from c360.pipeline import transform
from tests import dbt_testkit as kit

pytestmark = [pytest.mark.integration, pytest.mark.spark_warehouse, pytest.mark.timeout(1800)]

NIGHT_1, NIGHT_2 = date(2025, 1, 18), date(2025, 1, 20)
# segments.yml as marketing writes it: dbt gets segments_dbt_var() of it, the exports load_segments() of it
SEGMENTS_YML = """
segments:
  - name: buyers
    description: customers with an order
    where: orders_count >= 1
    required_consent: marketing
    destination: crm
  - name: high_churn
    description: likely to churn
    where: churn_decile >= 8
    required_consent: marketing
    destination: ads
    columns: [churn_probability, rec_1, rec_2]
  - name: maybe_alive
    description: still alive, scored or not
    where: coalesce(p_alive, 1) >= 0.5
    required_consent: none
    destination: analytics
"""
SCORES = {
    NIGHT_1: {"C1": (0.91, 9), "C2": (0.2, 3), "C3": (0.8, 8), "C4": (0.05, 1)},
    NIGHT_2: {"C1": (0.15, 2), "C2": (0.95, 9), "C3": (0.81, 8), "C4": (0.99, 10)},
}
# landed for night 1 (C3's only order), its file deleted before night 2
VANISHED_ORDER = "O4"
SCHEMAS = ("intermediate", "marts", "pii", "feature_store", "feature_store_work", "reference")
REL_TOL = 1e-9


# a person of four customer ids in a chain: C1 - C5 (the same email), C5 - C6 (cookie A9: both logged in on it), C6 - C7
# (cookie A8). C6 and C7 gave no email, so those cookies are not guarded for conflicting emails. Three links from
# end to end: Spark's identity components need three relaxation steps.
CHAIN_CUSTOMERS = [
    {"customer_id": "C5", "email": " C1@Example.com", "first_name": "Ann", "last_name": "One",
     "signup_at": "2025-01-06T10:00:00Z", "country": "DE", "marketing_consent": True,
     "updated_at": "2025-01-06T10:00:00Z"},
    {"customer_id": "C6", "signup_at": "2025-01-06T11:00:00Z", "country": "AT", "marketing_consent": False,
     "updated_at": "2025-01-06T11:00:00Z"},
    {"customer_id": "C7", "signup_at": "2025-01-06T12:00:00Z", "country": "AT", "marketing_consent": True,
     "updated_at": "2025-01-06T12:00:00Z"},
]
CHAIN_TRACKING = {"2025-01-19": [
    kit._event("c51", "A9", "2025-01-19T10:00:00Z", "login", customer_id="C5"),
    kit._event("c61", "A9", "2025-01-19T11:00:00Z", "login", customer_id="C6"),
    kit._event("c62", "A8", "2025-01-19T12:00:00Z", "login", customer_id="C6"),
    kit._event("c71", "A8", "2025-01-19T13:00:00Z", "login", customer_id="C7"),
]}


def land(con, after: date | None, up_to: date) -> None:
    """The base scenario's partitions landed in (after, up_to], as the ingestion loads them."""
    kit.create_raw_tables(con)
    def due(dt: str) -> bool:
        d = date.fromisoformat(dt)
        return (after is None or d > after) and d <= up_to
    if due("2025-01-01"):
        kit.insert(con, "products", kit.PRODUCTS, "2025-01-01")
    if due("2025-01-07"):
        kit.insert(con, "customers", kit.CUSTOMERS + CHAIN_CUSTOMERS, "2025-01-07")
    if due("2025-01-20"):
        kit.insert(con, "customers", [kit.C1_CONSENT_WITHDRAWN], "2025-01-20")
    for table, partitions in (("transactions", kit.TRANSACTIONS), ("tracking_events", kit.TRACKING),
                              ("tracking_events", CHAIN_TRACKING)):
        for dt, rows in partitions.items():
            if due(dt):
                kit.insert(con, table, rows, dt)
    if after == NIGHT_1:
        kit.remove_landed_order(con, VANISHED_ORDER, NIGHT_2)


def publish_scores(day: date) -> None:
    rows = [{"customer_id": c, "as_of_date": day, "run_id": f"run-{day}", "churn_probability": p,
             "churn_decile": decile, "p_alive": 1 - p, "expected_purchases": 2 * (1 - p),
             "predicted_value_eur": 100.0 * (1 - p) + 5, "value_decile": 11 - decile,
             "churn_model_version": "1", "clv_model_version": "1", "recommender_model_version": "1",
             "feature_snapshot_date": day, "scored_at": datetime(day.year, day.month, day.day, 5),
             "churn_horizon_days": 90, "value_horizon_days": 180}
            for c, (p, decile) in SCORES[day].items()]
    recommendations = [{"customer_id": c, "as_of_date": day, "rank": r, "product_id": f"P{r}", "score": 1.0 / r,
                        "source": "als", "run_id": f"run-{day}", "recommender_model_version": "1"}
                       for c in SCORES[day] for r in (1, 2)]
    kit.publish_scores(day, rows, recommendations)


def use_warehouse(mp, name: str, root: Path) -> None:
    mp.setenv("C360_WAREHOUSE", name)
    mp.setenv("DBT_TARGET", "spark" if name == "spark" else "ci")
    # each warehouse's own dbt target folder: dbt's partial parse must not mix the two adapters' manifests
    mp.setenv("DBT_TARGET_PATH", str(root / f"dbt_target_{name}"))
    mp.setenv("C360_FEATURE_STORE_DIR", str(root / f"feature_store_{name}"))
    mp.setenv("EXPORT_URI", str(root / f"exports_{name}"))


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("spark_warehouse")
    with pytest.MonkeyPatch.context() as mp:
        kit.configure_env(mp, root)
        mp.setenv("C360_SCORES_DIR", str(root / "scores"))
        mp.setenv("C360_SPARK_WAREHOUSE_DIR", str(root / "spark-warehouse"))
        mp.setenv("C360_SPARK_METASTORE_DIR", str(root / "spark-metastore"))
        mp.setenv("SPARK_MASTER", "local[2]")
        # next-best-action rules the four customers reach: win-back after 5 days without an order, a minimum value
        # some candidates miss (both reasons format a decimal, which Spark's printf refused)
        mp.setenv("C360_NBA_WIN_BACK_AFTER_DAYS", "5")
        mp.setenv("C360_NBA_MIN_EXPECTED_VALUE_EUR", "5.0")
        segments_file = root / "segments.yml"
        segments_file.write_text(SEGMENTS_YML)
        segments = segments_dbt_var(segments_file)
        out = {"root": root, "builds": {}, "published": {}, "segments_file": segments_file}
        previous = None
        for night in (NIGHT_1, NIGHT_2):
            with kit.connect() as con:
                land(con, previous, night)
            previous = night
            publish_scores(night)
            for name in ("duckdb", "spark"):
                use_warehouse(mp, name, root)
                settings = get_settings()
                if name == "spark":
                    from c360.ingest.spark_publish import publish_raw

                    out["published"][night] = publish_raw(settings)
                out["builds"][(name, night)] = transform.run_dbt(kit.BUILD_MODELS, night, settings,
                                                                 segments=segments)
                out[("features", name)] = transform.export_feature_parquet(night, settings)
        yield out
    # the Hive session dbt-spark started must not serve the next module's Spark tests
    from pyspark.sql import SparkSession

    if (active := SparkSession.getActiveSession()) is not None:
        active.stop()


def _value(v):
    """A value as both warehouses' readers should agree on it: instants in UTC, nested values normalised the same
    way (Spark returns a struct list; DuckDB a list of dicts)."""
    if isinstance(v, datetime):
        return v if v.tzinfo else v.replace(tzinfo=datetime.now().astimezone().tzinfo).astimezone()
    if isinstance(v, dict):
        return {k: _value(x) for k, x in sorted(v.items())}
    if isinstance(v, (list, tuple)):
        return [_value(x) for x in v]
    return v


def _sort_key(row: dict) -> tuple:
    def one(v):
        if v is None:
            return (0, "")
        if isinstance(v, (float, Decimal)):
            return (1, f"{float(v):.4g}")
        return (1, repr(v))
    return tuple(one(row[k]) for k in sorted(row))


def _same(a, b) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, Decimal) and isinstance(b, Decimal):
        # one unit in the last place: a value computed in double precision and cast to a decimal rounds a tie
        # (64.35 / 2 = 32.175) from the binary double on DuckDB (32.17) but from its shortest decimal text on Spark
        # (32.18). Anything more is a difference.
        return abs(a - b) <= Decimal(1).scaleb(min(a.as_tuple().exponent, b.as_tuple().exponent, 0))
    if isinstance(a, Decimal) or isinstance(b, Decimal):
        a, b = float(a), float(b)
    if isinstance(a, float) or isinstance(b, float):
        if isinstance(a, bool) or isinstance(b, bool):
            return a == b
        return math.isclose(float(a), float(b), rel_tol=REL_TOL, abs_tol=1e-9)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def rows(con, relation: str) -> list[dict]:
    table = con.sql(f"select * from {relation}").arrow()
    if hasattr(table, "read_all"):
        table = table.read_all()
    out = [_row(r) for r in table.to_pylist()]
    return sorted(out, key=_sort_key)


def differences(duck: list[dict], spark: list[dict]) -> list[str]:
    if len(duck) != len(spark):
        return [f"{len(duck)} rows on DuckDB, {len(spark)} on Spark"]
    if duck and set(duck[0]) != set(spark[0]):
        return [f"columns differ: {sorted(set(duck[0]) ^ set(spark[0]))}"]
    out = []
    for i, (d, s) in enumerate(zip(duck, spark, strict=True)):
        bad = [k for k in d if not _same(d[k], s[k])]
        if bad:
            out.append(f"row {i}: " + ", ".join(f"{k}: {d[k]!r} != {s[k]!r}" for k in bad))
    return out


@pytest.fixture
def readers(built):
    # per test: an open read-only connection to the DuckDB file would keep the erasure below from writing it
    from c360.pipeline.spark_warehouse import reader

    with pytest.MonkeyPatch.context() as mp:
        use_warehouse(mp, "spark", built["root"])
        spark_con = reader(get_settings())
    duck_con = duckdb.connect(str(get_settings().warehouse_path), read_only=True)
    yield duck_con, spark_con
    duck_con.close()
    spark_con.close()


def model_tables(con) -> set[str]:
    """The DuckDB build's relations; the models that are views there are tables on Spark (reader_view())."""
    return {f"{s}.{t}" for s, t in con.execute(
        "select table_schema, table_name from information_schema.tables where table_catalog = current_database() "
        f"and table_schema in {SCHEMAS!r}").fetchall()}


def test_every_node_builds_on_both_warehouses_both_nights(built):
    for (name, night), result in built["builds"].items():
        assert result.success, f"{name} {night}: {result.summary()} {[n.unique_id for n in result.failures]}"
        models = [n for n in result.nodes if n.unique_id.startswith("model.")]
        assert len(models) >= 40, (name, night, len(models))


def test_the_raw_tables_reach_spark_through_the_ledger(built, readers):
    """Night 1 publishes every landing date; night 2 only the ones it landed (plus none it did not touch)."""
    assert sum(built["published"][NIGHT_1].values()) > 0
    night_2_dates = {d for d in [*kit.TRANSACTIONS, *kit.TRACKING, "2025-01-20"] if "2025-01-18" < d <= "2025-01-20"}
    assert built["published"][NIGHT_2]["transactions"] + built["published"][NIGHT_2]["customers"] \
        + built["published"][NIGHT_2]["tracking_events"] <= len(night_2_dates) * 3
    assert built["published"][NIGHT_2]["products"] == 0  # landed on night 1 only, unchanged since


def test_every_table_is_the_same_on_both_warehouses(readers):
    assert_same_tables(*readers)


def assert_same_tables(duck_con, spark_con) -> None:
    duck_tables, spark_tables = model_tables(duck_con), {
        f"{s}.{t}" for s, t in spark_con.execute(
            "select table_schema, table_name from information_schema.tables where table_type = 'VIEW' "
            f"and table_schema in {SCHEMAS!r} and table_catalog = current_database()").fetchall()}
    assert duck_tables, "the DuckDB build made no tables"
    assert duck_tables == spark_tables
    problems = {}
    for relation in sorted(duck_tables):
        found = differences(rows(duck_con, relation), rows(spark_con, relation))
        if found:
            problems[relation] = found[:3]
    assert not problems, problems


def test_the_marts_users_rely_on_have_rows_on_spark(readers):
    """The comparison above is not of empty tables: the marts analysts, training and marketing read are filled."""
    _, spark_con = readers
    for relation, at_least in {"marts.fct_orders": 3, "marts.dim_customers": 4, "marts.customer_360": 4,
                               "marts.fct_sessions": 2, "feature_store.customer_features": 8,
                               "marts.customer_scores": 8, "marts.segment_members": 2,
                               "marts.segment_changes": 1, "feature_store.interactions": 4,
                               "intermediate.int_identity_components": 4}.items():
        assert spark_con.execute(f"select count(*) from {relation}").fetchone()[0] >= at_least, relation
    # the next-best-action reasons that format amounts (win-back, below the minimum value) are among those compared
    reasons = {r for row in spark_con.execute(
        "select best_candidate_action, suppressed_by from marts.customer_next_best_action").fetchall() for r in row}
    assert {"win_back", "below_min_value"} <= reasons, reasons
    # the identity graph compared above is not trivial: the chain is one person on night 2 (linked on 01-19)
    assert spark_con.execute("select anchor_customer_id, count(*) from intermediate.int_identity_components "
                             "where customer_id in ('C1', 'C5', 'C6', 'C7') group by all").fetchall() == [("C1", 4)]


def test_an_order_whose_file_was_deleted_leaves_the_order_tables_on_spark(readers):
    """Night 1 built O4; its landed file went before night 2, whose incremental rewrite must drop it from the
    order models (which only rebuild orders that still have lines) and from C3's lifetime order figures."""
    duck_con, spark_con = readers
    for con in (duck_con, spark_con):
        for relation in ("intermediate.int_order_lines", "marts.fct_orders"):
            assert con.execute(f"select count(*) from {relation} where order_id = ?", [VANISHED_ORDER]).fetchone() \
                == (0,), relation
        assert con.execute("select count(*) from marts.fct_orders").fetchone()[0] >= 3  # the other orders stay
        assert con.execute("select orders_count from feature_store.customer_features where customer_id = 'C3' "
                           "and as_of_date = ?", [NIGHT_2]).fetchall() in ([], [(0,)])


def test_the_feature_store_export_is_the_same_from_both(built):
    """Training and scoring read the feature store's Parquet: exported from Spark, it holds the same rows."""
    duck_dir, spark_dir = built["root"] / "feature_store_duckdb", built["root"] / "feature_store_spark"
    duck_files = sorted(p.relative_to(duck_dir) for p in duck_dir.rglob("*.parquet"))
    assert duck_files and duck_files == sorted(p.relative_to(spark_dir) for p in spark_dir.rglob("*.parquet"))
    for rel in duck_files:
        a = [_row(r) for r in pq.read_table(duck_dir / rel).to_pylist()]
        b = [_row(r) for r in pq.read_table(spark_dir / rel).to_pylist()]
        assert not differences(sorted(a, key=_sort_key), sorted(b, key=_sort_key)), rel


def test_segment_exports_are_the_same_from_both(built):
    from c360.marketing.exports.export import export_segments

    segments = load_segments(built["segments_file"])
    written = {}
    with pytest.MonkeyPatch.context() as mp:
        for name in ("duckdb", "spark"):
            use_warehouse(mp, name, built["root"])
            manifest = export_segments(NIGHT_2, get_settings(), segments=segments, force=True)
            root = Path(os.environ["EXPORT_URI"])
            # each export is its own run=<id> folder: compare by date and file name
            written[name] = {Path(*[part for part in p.relative_to(root).parts if not part.startswith("run=")]): p
                             for p in root.rglob("*") if p.is_file() and p.suffix in (".csv", ".parquet")}
            assert manifest["segments"], name
    assert written["duckdb"] and set(written["duckdb"]) == set(written["spark"])
    for rel, path in written["duckdb"].items():
        if path.suffix == ".csv":
            assert sorted(path.read_text().splitlines()) == sorted(written["spark"][rel].read_text().splitlines()), rel
        else:
            a, b = pq.read_table(path).to_pylist(), pq.read_table(written["spark"][rel]).to_pylist()
            assert not differences(sorted(map(_row, a), key=_sort_key), sorted(map(_row, b), key=_sort_key)), rel


def test_a_sync_sends_the_same_changes_from_both(built, tmp_path):
    """`c360 sync` on the Spark warehouse reads the export rows from the Spark table and keeps its log in the ledger:
    over both nights the destination receives the same changes (idempotency key, segment, date, change, hashed email) as from
    DuckDB. (The two warehouses share the test's ledger file: one destination name each, so neither finds the
    other's log rows.)"""
    import yaml

    from c360.marketing.activation.destinations import load_destinations
    from c360.marketing.activation.sync import SYNC_LOG, sync_date
    from c360.marketing.exports.export import export_segments
    from c360dev.receiver import Receiver

    segments = load_segments(built["segments_file"])
    received = {}
    for name in ("duckdb", "spark"):
        with pytest.MonkeyPatch.context() as mp, Receiver() as rec:
            use_warehouse(mp, name, built["root"])
            destinations = tmp_path / f"destinations_{name}.yml"
            destinations.write_text(yaml.safe_dump({"version": 1, "destinations": [
                {"name": f"crm_{name}", "type": "http_json", "url": rec.url,
                 "segments": [s.name for s in segments],
                 "auth": {"header": "Authorization", "scheme": "Bearer", "token_env": "C360_DEST_CRM_TOKEN"}}]}))
            mp.setenv("C360_DESTINATIONS_FILE", str(destinations))
            mp.setenv("C360_DEST_CRM_TOKEN", "test-token")
            settings = get_settings()
            # a Spark shop's ledger has no pii schema: hide the DuckDB build's view while the Spark side syncs
            hidden = name == "spark"
            if hidden:
                with kit.connect() as con:
                    con.execute("alter view pii.segment_export_rows rename to segment_export_rows_hidden")
            try:
                for night in (NIGHT_1, NIGHT_2):
                    export_segments(night, settings, segments=segments, force=True)
                    result = sync_date(night, settings, load_destinations(settings, segments), segments)
                    assert not result.failed, result.as_dict()
            finally:
                if hidden:
                    with kit.connect() as con:
                        con.execute("alter view pii.segment_export_rows_hidden rename to segment_export_rows")
            received[name] = rec.received.applied
    # C3 enters high_churn on night 1 (consent, email): the one change with both in the test shop
    assert received["duckdb"], "the test shop sends no change: nothing compared"
    assert received["spark"] == received["duckdb"]
    with kit.connect() as con:  # both logs in the ledger file, acknowledged
        logged = dict(con.execute(f"select destination, count(*) from {SYNC_LOG} where status = 'acknowledged' "
                                  "group by 1").fetchall())
    assert logged == {"crm_duckdb": len(received["duckdb"]), "crm_spark": len(received["spark"])}


def test_the_segments_page_reads_the_spark_tables(built, tmp_path):
    """`c360 ui` on the Spark warehouse: its snapshot is a copy of the ledger and its queries read the Spark tables,
    so the page lists the same segments, dates and sizes as on DuckDB. The Spark side gets a ledger without the
    DuckDB build's schemas (the test's warehouses share one file; a Spark shop's ledger has none of them)."""
    import shutil

    from fastapi.testclient import TestClient

    from c360.marketing.ui.app import create_app
    from c360.pipeline.spark_warehouse import MODEL_SCHEMAS

    ledger = tmp_path / "ledger.duckdb"
    shutil.copyfile(get_settings().warehouse_path, ledger)
    with duckdb.connect(str(ledger)) as con:
        for schema in MODEL_SCHEMAS:
            con.execute(f'drop schema if exists "{schema}" cascade')
    pages = {}
    for name in ("duckdb", "spark"):
        with pytest.MonkeyPatch.context() as mp:
            use_warehouse(mp, name, built["root"])
            if name == "spark":
                mp.setenv("WAREHOUSE_PATH", str(ledger))
            app = create_app(get_settings(), built["segments_file"], background=False)
            with TestClient(app, base_url="http://127.0.0.1:8050") as client:
                page = client.get("/")
                assert page.status_code == 200, (name, page.text[:500])
                pages[name] = client.get("/api/segments").json()
    assert [s["name"] for s in pages["duckdb"]] == ["buyers", "high_churn", "maybe_alive"]
    assert all(s["size"] is not None for s in pages["duckdb"]), pages["duckdb"]
    assert pages["spark"] == pages["duckdb"]


def _row(r: dict) -> dict:
    return {k: _value(v) for k, v in r.items()}


def test_the_data_tests_pass_on_spark(built):
    """The project's data tests (not the unit tests: those check SQL logic on DuckDB) on the Spark build."""
    with pytest.MonkeyPatch.context() as mp:
        use_warehouse(mp, "spark", built["root"])
        result = transform.run_dbt(["test", "--exclude-resource-type", "unit_test"], NIGHT_2, get_settings(),
                                   raise_on_failure=False)
    assert result.success, [(n.unique_id, n.message) for n in result.failures]
    assert len(result.nodes) > 200


ERASED, ERASED_EMAIL = "C2", "c2@example.com"  # two orders, a login on the shared device A2


def _spark_files_naming(spark_dir: Path, *values: str) -> list[str]:
    """Every Parquet file of the Spark warehouse (its tables, raw included) holding one of `values` as a value."""
    hits = []
    for path in sorted(spark_dir.rglob("*.parquet")):
        found = {v for row in pq.read_table(path).to_pylist() for v in row.values() if isinstance(v, str)}
        if found & set(values):
            hits.append(str(path.relative_to(spark_dir)))
    return hits


def test_erasure_reaches_every_spark_table(built, capsys):
    """`c360 erase-customer` with C360_WAREHOUSE=spark: the dry run counts the Spark tables' rows and changes nothing;
    the erasure leaves no Spark table file (raw tables included) naming the customer or their email, removes from
    Spark exactly what the same erasure removes from DuckDB's tables (the test shop's DuckDB build shares the
    ledger file, so the ledger phase erases it there: every table then compares equal again), empties the session
    running totals their shared device feeds, and logs the Spark tables in privacy.erasure_log."""
    from c360.ingest.load import ensure_raw_schema
    from c360.privacy.erasure import erase_customer, print_summary

    with kit.connect() as con:
        ensure_raw_schema(con)  # the ledger's quarantine and audit, as `c360 ingest` creates them
    spark_dir = built["root"] / "spark-warehouse"
    assert _spark_files_naming(spark_dir, ERASED, ERASED_EMAIL), "the test shop has no rows about the customer"
    before = {str(p) for p in spark_dir.rglob("*.parquet")}
    with pytest.MonkeyPatch.context() as mp:
        use_warehouse(mp, "spark", built["root"])
        settings = get_settings()
        preview = erase_customer(ERASED, settings, dry_run=True)
        assert {str(p) for p in spark_dir.rglob("*.parquet")} == before, "the dry run changed Spark tables"
        spark_counted = {t: n for t, n in preview.tables.items() if t.startswith("spark:")}
        assert spark_counted.get("spark:marts.fct_orders") == 2, preview.tables  # O3 and O5
        assert "spark:marts.dim_customers" in spark_counted and "spark:marts.fct_sessions" in spark_counted
        result = erase_customer(ERASED, settings)
        print_summary(result)
    assert result.tables == preview.tables
    assert "spark:marts.dim_customers" in capsys.readouterr().out
    assert _spark_files_naming(spark_dir, ERASED, ERASED_EMAIL) == []
    with pytest.MonkeyPatch.context() as mp:
        use_warehouse(mp, "spark", built["root"])
        from c360.pipeline.spark_warehouse import reader

        spark_con = reader(get_settings())
    duck_con = duckdb.connect(str(get_settings().warehouse_path), read_only=True)
    try:
        # A2 was shared with C1, C3 and C4: the running totals wait for the next night's rebuild, on both
        for con in (duck_con, spark_con):
            assert con.execute("select count(*) from feature_store_work.fs_customer_session_totals").fetchone() == (0,)
            assert con.execute("select count(*) from marts.dim_customers where customer_id in ('C1', 'C3')"
                               ).fetchone() == (2,)  # the others stay
        assert_same_tables(duck_con, spark_con)
        logged = json.loads(duck_con.execute("select rows_deleted from privacy.erasure_log where completed_at is "
                                              "not null").fetchone()[0])
        assert logged == result.tables
    finally:
        duck_con.close()
        spark_con.close()


def test_a_person_wider_than_the_spark_steps_fails_the_build_naming_the_setting(built):
    """Spark finds the identity graph's components in C360_IDENTITY_SPARK_STEPS relaxation steps: a chain longer
    than that fails the model, saying what to raise, instead of splitting the person. (Runs last: the failed model
    leaves the table missing until the next build, as dbt-spark's table materialization on Parquet does.)"""
    with pytest.MonkeyPatch.context() as mp:
        use_warehouse(mp, "spark", built["root"])
        mp.setenv("C360_IDENTITY_SPARK_STEPS", "2")
        result = transform.run_dbt(["run", "-s", "int_identity_components"], NIGHT_2, get_settings(),
                                   raise_on_failure=False)
    assert not result.success
    assert "set C360_IDENTITY_SPARK_STEPS higher" in " ".join(n.message or "" for n in result.failures)
