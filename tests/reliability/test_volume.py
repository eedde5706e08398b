"""Volume checks (issue #13 item 7): a night with 10x or 0.1x an entity's usual rows holds scoring and exports with a
message naming the entity, the count, the expected range and the override; short history and tiny feeds never hold."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta

import duckdb
import pytest

from c360.config import get_settings
from c360.ingest.volume import check_volumes, decide

pytestmark = pytest.mark.reliability

D = date(2025, 6, 1)
# two weeks of a shop with weekly seasonality: weekends busier (the median is 100)
WEEK = (80, 90, 100, 100, 110, 140, 150)


def history(entity="transactions", nights=14, week=WEEK, day=D):
    """(entity, dt, files, landed) for the `nights` dates before `day`."""
    return [(entity, day - timedelta(days=i), 1, week[i % 7]) for i in range(nights, 0, -1)]


@pytest.fixture
def settings(c360_env, monkeypatch):
    for var in ("C360_VOLUME_LOOKBACK_DAYS", "C360_VOLUME_MIN_RATIO", "C360_VOLUME_MAX_RATIO",
                "C360_VOLUME_MIN_HISTORY", "C360_VOLUME_MIN_ROWS", "C360_VOLUME_OVERRIDE_DATE"):
        monkeypatch.delenv(var, raising=False)
    return get_settings()


def one(checks, entity="transactions"):
    [check] = [c for c in checks if c.entity == entity]
    return check


@pytest.mark.parametrize(("landed", "status", "held"), [
    (1000, "high", True),   # 10x
    (10, "low", True),      # 0.1x
    (100, "ok", False),
    (150, "ok", False),     # a busy weekend day
    (20, "ok", False),      # the bounds are included: 0.2 x 100
    (500, "ok", False),     # 5.0 x 100
    (501, "high", True),
])
def test_a_day_far_from_the_median_holds(settings, landed, status, held):
    checks = check_volumes([*history(), ("transactions", D, 1, landed)], D, settings)
    c = one(checks)
    assert (c.status, c.median, c.low, c.high, c.history) == (status, 100, 20, 500, 14)
    decision = decide(checks, D, settings)
    assert decision.hold is held
    if held:
        assert f"transactions: {landed:,} rows landed under transactions/dt={D}/" in decision.message
        assert "expected 20..500" in decision.message
        assert "--accept-volume" in decision.message and f"C360_VOLUME_OVERRIDE_DATE={D}" in decision.message
        assert decision.offenders == ({"entity": "transactions", "landed": landed, "low": 20, "high": 500,
                                       "median": 100, "status": status},)


def test_short_history_never_holds(settings):
    checks = check_volumes([*history(nights=6), ("transactions", D, 1, 1000)], D, settings)
    assert one(checks).status == "not_enough_history"
    assert "6 earlier night(s), the check needs C360_VOLUME_MIN_HISTORY=7" in one(checks).message
    assert not decide(checks, D, settings)
    # the seventh night makes it a check
    assert decide(check_volumes([*history(nights=7), ("transactions", D, 1, 1000)], D, settings), D, settings).hold


def test_the_override_releases_that_date_only(settings):
    rows = [*history(), ("transactions", D, 1, 1000)]
    overridden = replace(settings, volume_override_date=D.isoformat())
    released = decide(check_volumes(rows, D, overridden), D, overridden)
    assert not released.hold and released.status == "overridden"
    assert "C360_VOLUME_OVERRIDE_DATE=2025-06-01" in released.message and "1,000 rows" in released.message
    other = replace(settings, volume_override_date=(D - timedelta(days=1)).isoformat())
    assert decide(check_volumes(rows, D, other), D, other).hold


def test_a_daily_feed_that_lands_nothing_or_an_empty_file_is_low(settings):
    rows = [*history(), *history("tracking"), ("transactions", D, 1, 100), ("tracking", D, 1, 0)]
    assert one(check_volumes(rows, D, settings), "tracking").status == "low"
    missing = check_volumes([*history(), *history("tracking"), ("transactions", D, 1, 100)], D, settings)
    assert one(missing, "tracking").status == "low"
    assert "nothing landed under tracking/dt=2025-06-01/ (no file)" in decide(missing, D, settings).message


def test_optional_never_landed_sporadic_and_tiny_feeds_are_not_judged(settings):
    sporadic = [("products", D - timedelta(days=i), 1, 400) for i in (3, 10)]  # a price list now and then
    tiny = history("customers", week=(3, 5, 4, 6, 2, 5, 4))
    rows = [*history(), *sporadic, *tiny, ("transactions", D, 1, 100), ("products", D, 1, 900),
            ("customers", D, 1, 40)]
    checks = check_volumes(rows, D, settings)
    assert {c.entity for c in checks} == {"transactions", "products", "customers"}  # tracking never landed
    assert one(checks, "products").status == "too_few_rows" and one(checks, "products").median == 0
    assert one(checks, "customers").status == "too_few_rows"
    assert "below C360_VOLUME_MIN_ROWS=100" in one(checks, "customers").message
    assert not decide(checks, D, settings)


def test_only_the_lookback_window_counts(settings):
    # a month of 1,000 rows a night, then two weeks at 100: the old level no longer sets the expectation
    old = [("transactions", D - timedelta(days=i), 1, 1000) for i in range(45, 14, -1)]
    rows = [*old, *history(), ("transactions", D, 1, 100)]
    assert one(check_volumes(rows, D, settings)).status == "ok"
    # a 40-night window still sees mostly the old level
    assert one(check_volumes(rows, D, replace(settings, volume_lookback_days=40))).status == "low"
    assert one(check_volumes([*rows[:-1], ("transactions", D, 1, 1000)], D, settings)).status == "high"


def test_bounds_that_make_no_sense_are_refused(settings):
    with pytest.raises(ValueError, match="C360_VOLUME_MIN_RATIO=2.0 and C360_VOLUME_MAX_RATIO=5.0"):
        check_volumes(history(), D, replace(settings, volume_min_ratio=2.0))


# ------------------------------------------------------------------------------------ on a tiny warehouse

HEADER = "order_id,customer_id,ordered_at,amount,currency\n"


def land_day(settings, day: date, rows: int) -> None:
    from c360.storage import LocalStorage

    lines = [f"O{day:%m%d}{i:05d},C{i % 7},{day}T10:00:00Z,9.50,EUR" for i in range(rows)]
    LocalStorage(settings.landing_uri).write_bytes(f"transactions/dt={day}/orders.csv",
                                                   (HEADER + "\n".join(lines) + "\n").encode())


def test_a_10x_night_holds_exports_and_scoring_until_overridden(settings, monkeypatch):
    from airflow.sdk.exceptions import AirflowSkipException

    from c360.ingest.load import ingest
    from c360.ingest.reconcile import reconcile
    from c360.ingest.volume import skip_task_if_held
    from c360.marketing.exports import ExportHeld, export_segments, read_manifest
    from c360.pipeline.report.collect import collect
    from c360.pipeline.report.stages import read_stages
    from c360.storage import open_storage
    from tests.test_exports import D1, SEGMENTS, build_warehouse

    monkeypatch.setenv("C360_VOLUME_MIN_ROWS", "10")  # a tiny shop: about 19 orders a night
    settings = get_settings()
    normal = [D1 - timedelta(days=i) for i in range(8, 0, -1)]
    for i, day in enumerate(normal):
        land_day(settings, day, 18 + i % 3)  # 18..20 rows a night: median 19
    # the first night catches up on all eight partitions at once: each is judged as its own date
    ingest(normal[-1], settings)
    land_day(settings, D1, 190)
    ingest(D1, settings)
    assert reconcile(settings, D1)["landed"] == 190

    con = duckdb.connect(str(settings.warehouse_path), read_only=True)
    recorded = con.execute("SELECT as_of_date, entity, landed, median, low, high, status FROM monitoring.volume_checks "
                           "ORDER BY as_of_date").fetchall()
    total = con.execute("SELECT count(*), count(DISTINCT order_id) FROM raw.transactions").fetchone()
    con.close()
    assert total == (sum(18 + i % 3 for i in range(8)) + 190,) * 2  # nothing lost, no duplicates
    assert recorded[-1] == (D1, "transactions", 190, 19, pytest.approx(3.8), pytest.approx(95), "high")
    # the catch-up night: 7 earlier partitions, its own partition judged against them
    assert recorded[0] == (normal[-1], "transactions", 19, 19, pytest.approx(3.8), pytest.approx(95), "ok")

    build_warehouse(settings.warehouse_path, dates=(D1,))
    with pytest.raises(ExportHeld) as held:
        export_segments(D1, settings, segments=SEGMENTS)
    msg = str(held.value)
    assert "transactions: 190 rows landed under transactions/dt=2025-06-01/" in msg
    assert "expected 3.8..95" in msg and "--accept-volume" in msg and "--force" in msg
    exports = open_storage(settings.export_uri)
    assert read_manifest(exports, D1) is None  # nothing written

    with pytest.raises(AirflowSkipException, match="held: landed volume is out of range"):
        skip_task_if_held(D1, "score", settings)
    assert read_stages(settings, D1)[-1]["status"] == "skipped"
    facts = collect(settings, D1)
    assert facts["sections"]["volume"]["decision"]["hold"] is True
    assert any("held: landed volume" in w for w in facts["warnings"])
    # the report's summary says it in one sentence, with the figures (docs/report.md)
    held = facts["summary"]["holds"]["held"]
    assert [(h["kind"], h["reason"]) for h in held] == [("volume", "transactions landed 190 rows, expected 3.8 to 95")]
    assert facts["summary"]["status"] == "held" and facts["summary"]["holds"]["exports"]["status"] == "held"

    forced = export_segments(D1, settings, segments=SEGMENTS, force=True)
    assert forced["volume_check"]["forced"] is True
    holds = collect(settings, D1)["summary"]["holds"]
    assert [h["kind"] for h in holds["forced"]] == ["volume"] and holds["held"] == []

    monkeypatch.setenv("C360_VOLUME_OVERRIDE_DATE", D1.isoformat())
    released = export_segments(D1, get_settings(), segments=SEGMENTS)
    assert released["volume_check"]["status"] == "overridden" and released["volume_check"]["forced"] is False
    assert skip_task_if_held(D1, "score", get_settings()).status == "overridden"
    holds = collect(get_settings(), D1)["summary"]["holds"]
    assert [h["kind"] for h in holds["released"]] == ["volume"] and holds["held"] == holds["forced"] == []
    assert sum(s["rows"] for s in released["segments"].values()) > 0


def test_accept_volume_releases_only_the_nights_of_that_run(settings, monkeypatch):
    import os

    from c360.cli import build_parser, nightly
    from c360.pipeline import airflow_env, dagrun, summary

    land_day(settings, D, 1)  # a landing zone that is not empty: no demo is generated
    seen = []

    class Done:  # a DAG run that succeeded
        def problem(self):
            return None

    def run_dag(dag_id, day, s, **kwargs):
        seen.append((day.isoformat(), s.as_env()))  # the environment the Airflow child gets
        return Done()

    monkeypatch.setattr(airflow_env, "ensure_airflow", lambda s: None)
    monkeypatch.setattr(dagrun, "run_dag", run_dag)
    monkeypatch.setattr(summary, "print_nightly_summary", lambda *a: None)

    def run(*argv):
        seen.clear()
        nightly.run(build_parser({"nightly"}).parse_args(["nightly", *argv]))
        return {(day, env["C360_VOLUME_OVERRIDE_DATE"]) for day, env in seen}

    assert run("--from", "2025-06-01", "--to", "2025-06-02", "--accept-volume") == {
        ("2025-06-01", "2025-06-01"), ("2025-06-02", "2025-06-02")}
    assert "C360_VOLUME_OVERRIDE_DATE" not in os.environ
    assert run("--date", "2025-06-01") == {("2025-06-01", "")}


def test_volume_settings_reach_subprocesses(settings, monkeypatch):
    monkeypatch.setenv("C360_VOLUME_MAX_RATIO", "8")
    monkeypatch.setenv("C360_VOLUME_OVERRIDE_DATE", "2025-06-01")
    env = get_settings().as_env()
    for name, value in env.items():  # what an Airflow child process sees resolves to the same settings
        monkeypatch.setenv(name, value)
    child = get_settings()
    assert (child.volume_max_ratio, child.volume_override_date, child.volume_min_rows) == (8.0, "2025-06-01", 100)
    assert child == get_settings()
