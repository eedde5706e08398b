"""Destination sync under faults (docs/destinations.md): a local receiver on 127.0.0.1 injects 429 (Retry-After), 503,
a dropped connection and endless 5xx; the sync is crashed mid-way (SIGKILL of a child `c360 sync`, an exception
after a recorded batch) and rerun. Every consenting change must be applied by the receiver exactly once by its
idempotency key, nothing lost, and an acknowledged batch never sent again. The destinations file is untrusted input.

The warehouse here holds pii.segment_export_rows as a plain table with the view's columns the sync reads (as_of_date,
segment, customer_id, is_member, change, consent_ok, email): the sync only filters it, dbt's tests cover the view.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import duckdb
import pytest
import yaml

from c360.config import get_settings
from c360.marketing.activation.destinations import (
    DestinationConfigError,
    SyncError,
    load_destinations,
    match_key,
    parse_destinations,
)
from c360.marketing.activation.sync import SYNC_LOG, NotExported, sync_date
from c360.marketing.segments import load_segments
from c360dev.receiver import Receiver

pytestmark = pytest.mark.reliability

REPO = Path(__file__).resolve().parents[2]
D = date(2025, 6, 2)
TOKEN = "tok-3f9a-very-secret"
SEGMENTS = ("win_back", "high_value_at_risk")
BATCH = 7


def _rows() -> list[tuple]:
    """Per segment: 25 entered + 12 exited consenting (emails in odd case and spacing), 4 changes without consent,
    2 consenting changes without an email, 10 members without a change."""
    rows = []
    for seg in SEGMENTS:
        for i in range(37):
            change = "entered" if i < 25 else "exited"
            rows.append((D, seg, f"c{i:03d}", change == "entered", change, True, f"  User{i}@Example.COM "))
        rows += [(D, seg, f"n{i:03d}", True, "entered", False, None) for i in range(4)]
        rows += [(D, seg, f"e{i:03d}", True, "entered", True, "  ") for i in range(2)]
        rows += [(D, seg, f"m{i:03d}", True, None, True, f"m{i}@example.com") for i in range(10)]
    return rows


def expected_keys() -> dict[str, tuple]:
    """idempotency key -> (segment, date, change, match key) of every change the sync must deliver."""
    out = {}
    for _, seg, cid, _, change, consent, email in _rows():
        if change and consent and email and email.strip():
            key = hashlib.sha256(f"{seg}|{D.isoformat()}|{cid}".encode()).hexdigest()
            out[key] = (seg, D.isoformat(), change, hashlib.sha256(email.strip().lower().encode()).hexdigest())
    return out


@pytest.fixture
def env(tmp_path, monkeypatch):
    data = tmp_path / "data"
    monkeypatch.setenv("C360_DATA_DIR", str(data))
    monkeypatch.setenv("WAREHOUSE_PATH", str(data / "warehouse.duckdb"))
    monkeypatch.setenv("EXPORT_URI", str(data / "exports"))
    monkeypatch.setenv("C360_DESTINATIONS_FILE", str(tmp_path / "destinations.yml"))
    monkeypatch.setenv("C360_SYNC_BATCH_SIZE", str(BATCH))
    monkeypatch.setenv("C360_SYNC_BACKOFF_BASE_SECONDS", "0.01")
    monkeypatch.setenv("C360_SYNC_BACKOFF_MAX_SECONDS", "0.05")
    monkeypatch.setenv("C360_SYNC_MAX_RETRY_SECONDS", "5")
    monkeypatch.setenv("C360_SYNC_TIMEOUT_SECONDS", "5")
    monkeypatch.setenv("C360_DEST_CRM_TOKEN", TOKEN)
    (data / "warehouse.duckdb").parent.mkdir(parents=True)
    con = duckdb.connect(str(data / "warehouse.duckdb"))
    con.execute("CREATE SCHEMA pii")
    con.execute("""CREATE TABLE pii.segment_export_rows (as_of_date DATE, segment VARCHAR, customer_id VARCHAR,
                   is_member BOOLEAN, change VARCHAR, consent_ok BOOLEAN, email VARCHAR)""")
    con.executemany("INSERT INTO pii.segment_export_rows VALUES (?, ?, ?, ?, ?, ?, ?)", _rows())
    con.close()
    manifest = data / "exports" / f"dt={D}" / "manifest.json"
    manifest.parent.mkdir(parents=True)
    manifest.write_text(json.dumps({"as_of_date": D.isoformat(), "segments": {s: {} for s in SEGMENTS}}))
    return tmp_path


def write_destinations(env_dir: Path, url: str, **extra) -> Path:
    path = env_dir / "destinations.yml"
    entry = {"name": "crm", "type": "http_json", "url": url, "segments": list(SEGMENTS),
             "auth": {"header": "Authorization", "scheme": "Bearer", "token_env": "C360_DEST_CRM_TOKEN"}, **extra}
    path.write_text(yaml.safe_dump({"version": 1, "destinations": [entry]}))
    return path


def run_sync(env_dir: Path, url: str, **kw):
    write_destinations(env_dir, url)
    settings = get_settings()
    segments = load_segments()
    return sync_date(D, settings, load_destinations(settings, segments), segments, **kw)


def log_rows(status: str | None = None) -> list[tuple]:
    con = duckdb.connect(str(get_settings().warehouse_path), read_only=True)
    try:
        where = f"WHERE status = '{status}'" if status else ""
        return con.execute(f"SELECT segment, customer_id, status, batch_no, attempts FROM {SYNC_LOG} {where} "
                           "ORDER BY ALL").fetchall()
    finally:
        con.close()


def assert_exactly_once(received) -> None:
    """Every expected change applied once, with its segment, date, change and match key; nothing else."""
    assert received.applied == expected_keys()


# ------------------------------------------------------------------------------------- normal run and payload


def test_sends_only_consenting_changes_with_hashed_emails_batched_and_authenticated(env, caplog):
    caplog.set_level("DEBUG")
    with Receiver() as rec:
        result = run_sync(env, rec.url)
    expected = expected_keys()
    assert len(expected) == 74  # 37 consenting changes with an email per segment
    assert_exactly_once(rec.received)
    assert set(rec.received.deliveries.values()) == {1} and not rec.received.replayed
    # batches of 7 per segment: ceil(37 / 7) = 6 each
    assert rec.received.requests == rec.received.accepted_batches == 12
    assert all(h["Authorization"] == f"Bearer {TOKEN}" for h in rec.received.headers)
    assert len({h["Idempotency-Key"] for h in rec.received.headers}) == 12
    assert match_key("  User1@Example.COM ") == hashlib.sha256(b"user1@example.com").hexdigest()
    # no email address, customer id or token leaves in the request or reaches the log
    assert TOKEN not in caplog.text
    assert not result.failed
    assert [(s.segment, s.sent, s.acknowledged, s.without_email) for s in result.segments] == \
        [("win_back", 37, 37, 2), ("high_value_at_risk", 37, 37, 2)]
    rows = log_rows()
    assert len(rows) == 74 and {r[2] for r in rows} == {"acknowledged"}
    assert not any(cid.startswith(("n", "m", "e")) for _, cid, *_ in rows)  # no consent / no change / no email


def test_rerun_after_success_sends_nothing(env):
    with Receiver() as rec:
        run_sync(env, rec.url)
        first = rec.received.requests
        again = run_sync(env, rec.url)
    assert rec.received.requests == first
    assert [s.sent for s in again.segments] == [0, 0] and [s.acknowledged for s in again.segments] == [37, 37]


# ------------------------------------------------------------------------------------------- transient faults


def test_429_with_retry_after_503_and_dropped_connection_are_retried(env):
    with Receiver(faults=["429:1", "503", "drop"]) as rec:
        result = run_sync(env, rec.url)
    assert not result.failed
    assert_exactly_once(rec.received)
    assert not rec.received.replayed
    assert rec.received.requests == 12 + 3
    # the 429 asked for 1 s: the second attempt came no sooner
    t = rec.received.request_times
    assert t[1] - t[0] >= 0.95
    # the same batch (same key) was retried, and its log rows count the four attempts
    assert len({h["Idempotency-Key"] for h in rec.received.headers[:4]}) == 1
    first_batch = [r for r in log_rows() if r[0] == "win_back" and r[3] == 0]
    assert len(first_batch) == BATCH and {r[4] for r in first_batch} == {4}


def test_endless_5xx_stops_within_the_retry_budget_naming_the_batch_then_rerun_sends_the_rest(env, monkeypatch):
    monkeypatch.setenv("C360_SYNC_MAX_RETRY_SECONDS", "0.5")
    with Receiver(faults=["ok", "ok"] + ["503"] * 10_000) as rec:
        started = time.monotonic()
        result = run_sync(env, rec.url)
        took = time.monotonic() - started
        assert took < 3
        [failed] = result.failed
        for part in ("'crm'", "'win_back'", str(D), "batch 2", "HTTP 503", "retry budget 0.5 s", "c360 sync"):
            assert part in failed.error
        # the failing destination's other segment is not tried; the two acknowledged batches stay recorded
        assert [s.segment for s in result.segments] == ["win_back"]
        assert len(log_rows("acknowledged")) == 2 * BATCH
        assert len(log_rows("sent")) == BATCH  # batch 2: sent, outcome unknown
        rec.faults.clear()
        result = run_sync(env, rec.url)
    assert not result.failed
    assert_exactly_once(rec.received)
    assert not rec.received.replayed  # every 503 was refused, so nothing had been applied twice
    assert {r[2] for r in log_rows()} == {"acknowledged"}


def test_client_error_is_not_retried(env):
    with Receiver(faults=["401"]) as rec:
        result = run_sync(env, rec.url)
    [failed] = result.failed
    assert rec.received.requests == 1
    assert "HTTP 401" in failed.error and "Not retried" in failed.error and "batch 0" in failed.error
    assert TOKEN not in failed.error
    assert log_rows("acknowledged") == []


# ---------------------------------------------------------------------------------------- crash and rerun


def test_exception_after_a_recorded_batch_then_rerun_delivers_each_change_exactly_once(env):
    def crash(batch_no):
        if batch_no == 2:
            raise RuntimeError("injected crash after batch 2 was acknowledged and recorded")

    with Receiver() as rec:
        with pytest.raises(RuntimeError, match="injected crash"):
            run_sync(env, rec.url, after_batch=crash)
        assert len(log_rows("acknowledged")) == 3 * BATCH
        assert rec.received.requests == 3
        run_sync(env, rec.url)
    assert_exactly_once(rec.received)
    # nothing acknowledged was sent again: every key arrived exactly once
    assert set(rec.received.deliveries.values()) == {1} and not rec.received.replayed
    assert rec.received.requests == 12


def test_sigkill_mid_sync_then_rerun_applies_each_change_once_and_resends_only_the_unacknowledged_batch(env):
    """The child `c360 sync` is killed (SIGKILL: no cleanup runs) while the receiver holds its 4th request: the
    receiver applies that batch, the child never records the acknowledgement. The rerun resends only that batch,
    with the same keys (the receiver reports them as already applied), then the rest."""
    child: dict[str, subprocess.Popen] = {}
    at_crash: dict[str, list] = {}

    def kill_on_fourth(n, body):
        if n == 4 and "proc" in child and "killed" not in at_crash:
            child["proc"].send_signal(signal.SIGKILL)
            child["proc"].wait(10)
            at_crash["killed"] = [m["idempotency_key"] for m in body["members"]]

    with Receiver(on_request=kill_on_fourth) as rec:
        write_destinations(env, rec.url)
        proc = subprocess.Popen([sys.executable, "-m", "c360.cli", "sync", "--date", D.isoformat()],
                                cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        child["proc"] = proc
        proc.wait(60)
        assert proc.returncode == -signal.SIGKILL, proc.stdout.read().decode()[-2000:]
        assert len(log_rows("acknowledged")) == 3 * BATCH
        in_flight = log_rows("sent")
        assert len(in_flight) == BATCH and {r[3] for r in in_flight} == {3}
        acked_before = {k for k, n in rec.received.deliveries.items()} - set(at_crash["killed"])

        rerun = subprocess.run([sys.executable, "-m", "c360.cli", "sync", "--date", D.isoformat()],
                               cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True,
                               timeout=60)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    lines = [ln.split() for ln in rerun.stdout.splitlines() if ln.strip().startswith("crm")]
    # destination, segment, sent by the rerun, acknowledged in all, dropped, status
    assert lines == [["crm", "win_back", str(37 - 3 * BATCH), "37", "0", "ok"],
                     ["crm", "high_value_at_risk", "37", "37", "0", "ok"]]
    assert_exactly_once(rec.received)  # nothing lost, nothing applied twice
    # only the batch in flight at the kill came again; acknowledged batches were never resent
    assert set(rec.received.replayed) == set(at_crash["killed"])
    assert all(rec.received.deliveries[k] == 1 for k in acked_before)
    assert rec.received.requests == 12 + 1
    assert {r[2] for r in log_rows()} == {"acknowledged"} and len(log_rows()) == 74


def test_consent_withdrawn_between_crash_and_rerun_is_dropped_not_sent(env):
    def crash(batch_no):
        raise RuntimeError("crash after the first batch")

    with Receiver() as rec:
        with pytest.raises(RuntimeError):
            run_sync(env, rec.url, after_batch=crash)
        con = duckdb.connect(str(get_settings().warehouse_path))
        # c030 is planned in a later batch of win_back (exited rows sort after entered ones)
        con.execute("UPDATE pii.segment_export_rows SET consent_ok = false, email = NULL "
                    "WHERE segment = 'win_back' AND customer_id = 'c030'")
        con.close()
        result = run_sync(env, rec.url)
    withdrawn = hashlib.sha256(f"win_back|{D}|c030".encode()).hexdigest()
    assert withdrawn not in rec.received.deliveries
    assert set(rec.received.applied) == set(expected_keys()) - {withdrawn}
    assert result.segments[0].dropped == 1
    assert [r for r in log_rows("dropped")] == [("win_back", "c030", "dropped", 4, 0)]


def test_consent_withdrawn_after_an_acknowledged_entry_sends_an_exit_with_the_key_sent_before(env):
    """Membership does not depend on consent, so a withdrawal makes no `exited` change in the view; the sync sends one
    (reason consent_withdrawn) matched by the key the destination got with the entry: the view has no email now."""
    d2 = date(2025, 6, 3)
    con = duckdb.connect(str(get_settings().warehouse_path))
    con.executemany("INSERT INTO pii.segment_export_rows VALUES (?, ?, ?, ?, ?, ?, ?)", [
        row for seg in SEGMENTS for row in [
            (d2, seg, "c000", True, None, False, None),  # entered on D, still a member, withdrew: exit
            (d2, seg, "c001", True, None, True, "user1@example.com"),  # still consenting: nothing
            (d2, seg, "c025", False, None, False, None),  # exited on D already (acknowledged): nothing
            (d2, seg, "n000", True, None, False, None),  # never sent (no consent on D): nothing
        ]])
    con.close()
    manifest = get_settings().data_dir / "exports" / f"dt={d2}" / "manifest.json"
    manifest.parent.mkdir(parents=True)
    manifest.write_text(json.dumps({"as_of_date": d2.isoformat(), "segments": {s: {} for s in SEGMENTS}}))

    def sync(day):
        settings = get_settings()
        segments = load_segments()
        return sync_date(day, settings, load_destinations(settings, segments), segments)

    with Receiver() as rec:
        write_destinations(env, rec.url)
        sync(D)
        assert_exactly_once(rec.received)
        second = sync(d2)
        again = sync(d2)
        assert rec.received.requests == 12 + 2  # one exit batch per segment, the rerun sends nothing
    sent_key = hashlib.sha256(b"user0@example.com").hexdigest()
    exits = {hashlib.sha256(f"{seg}|{d2}|c000".encode()).hexdigest(): (seg, d2.isoformat(), "exited", sent_key)
             for seg in SEGMENTS}
    assert rec.received.applied == {**expected_keys(), **exits}
    assert [(s.withdrawn, s.sent) for s in second.segments] == [(1, 1), (1, 1)]
    assert [(s.withdrawn, s.sent) for s in again.segments] == [(0, 0), (0, 0)]
    con = duckdb.connect(str(get_settings().warehouse_path), read_only=True)
    assert con.execute(f"SELECT DISTINCT customer_id, change, reason, status FROM {SYNC_LOG} WHERE as_of_date = ?",
                       [d2]).fetchall() == [("c000", "exited", "consent_withdrawn", "acknowledged")]
    con.close()


def test_a_night_without_a_published_export_sends_nothing(env):
    (get_settings().data_dir / "exports" / f"dt={D}" / "manifest.json").unlink()
    with Receiver() as rec, pytest.raises(NotExported, match="no published export"):
        run_sync(env, rec.url)
    assert rec.received.requests == 0


def test_missing_token_variable_fails_before_sending(env, monkeypatch):
    monkeypatch.delenv("C360_DEST_CRM_TOKEN")
    with Receiver() as rec:
        write_destinations(env, rec.url)
        proc = subprocess.run([sys.executable, "-m", "c360.cli", "sync", "--date", D.isoformat()], cwd=REPO,
                              env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "C360_DEST_CRM_TOKEN is not set" in proc.stderr
    assert rec.received.requests == 0


# ------------------------------------------------------------------------------ the destinations file is untrusted


GOOD = {"name": "crm", "type": "http_json", "url": "https://crm.example.com/api/members",
        "auth": {"token_env": "C360_DEST_CRM_TOKEN"}}


@pytest.mark.parametrize("change, message", [
    ({"url": "file:///etc/passwd"}, "scheme 'file' is not allowed"),
    ({"url": "ftp://crm.example.com/x"}, "scheme 'ftp' is not allowed"),
    ({"url": "http://crm.example.com/x"}, "plain http to crm.example.com"),
    ({"url": "https://user:pw@crm.example.com/x"}, "carries credentials"),
    ({"url": "https://crm.example.com/x\r\nX-Evil: 1"}, "control characters"),
    ({"url": "https:///nohost"}, "has no host"),
    ({"url": "https://crm.example.com:99999/x"}, "not a valid URL"),
    ({"auth": {"token_env": "AWS_SECRET_ACCESS_KEY"}}, "auth.token_env' must name an environment variable C360_DEST_"),
    ({"auth": {"token_env": "C360_DEST_X", "header": "Authorization: x\r\nHost"}}, "auth.header' must be an HTTP"),
    ({"auth": {"token_env": "C360_DEST_X", "token": "inline"}}, "unknown key 'token'"),
    ({"type": "shell"}, "field 'type' is 'shell'"),
    ({"segments": ["nope"]}, "names 'nope', which segments.yml does not define"),
    ({"batch_size": 0}, "batch_size' must be a whole number from 1 to 10000"),
    ({"batch_size": True}, "batch_size' must be a whole number"),
    ({"name": "CRM; rm"}, "field 'name' must be a lower-case identifier"),
    ({"timeout_seconds": -1}, "timeout_seconds' must be a positive number"),
    ({"extra": 1}, "unknown field 'extra'"),
])
def test_hostile_destination_entries_are_refused_naming_the_field(change, message):
    segments = load_segments()
    with pytest.raises(DestinationConfigError) as err:
        parse_destinations({"version": 1, "destinations": [{**GOOD, **change}]}, segments, source="d.yml")
    assert "d.yml is invalid" in str(err.value) and message in str(err.value)


def test_valid_entries_loopback_http_and_default_segments():
    segments = load_segments()
    [cfg, local] = parse_destinations({"destinations": [
        GOOD, {**GOOD, "name": "relay", "url": "http://127.0.0.1:8080/x", "segments": ["vip"]}]}, segments)
    assert cfg.segment_names(segments) == [s.name for s in segments if s.destination == "crm"]
    assert local.segment_names(segments) == ["vip"]
    with pytest.raises(DestinationConfigError, match="defined 2 times"):
        parse_destinations({"destinations": [GOOD, GOOD]}, segments)


def test_secret_never_prints_itself(monkeypatch):
    monkeypatch.setenv("C360_DEST_CRM_TOKEN", TOKEN)
    secret = get_settings().secret("C360_DEST_CRM_TOKEN")
    assert TOKEN not in repr(secret) and TOKEN not in str(secret) and secret.reveal() == TOKEN
    assert TOKEN not in json.dumps(get_settings().describe())
    with pytest.raises(Exception, match="only variables named C360_DEST_"):
        get_settings().secret("HOME")


def test_sync_error_is_the_failure_type():
    assert issubclass(NotExported, SyncError)


def test_nightly_task_is_skipped_without_a_destinations_file(env):
    from datetime import datetime

    from airflow.sdk.exceptions import AirflowSkipException

    from c360.pipeline import tasks

    assert not get_settings().destinations_file.exists()
    with Receiver() as rec, pytest.raises(AirflowSkipException, match="no destination configured"):
        tasks.sync_destinations({"logical_date": datetime(2025, 6, 2)})
    assert rec.received.requests == 0


def test_nightly_task_syncs_the_run_date_and_fails_naming_the_batch(env):
    from datetime import datetime

    from c360.pipeline import tasks

    with Receiver(faults=["400"]) as rec:
        write_destinations(env, rec.url)
        with pytest.raises(SyncError, match="batch 0"):
            tasks.sync_destinations({"logical_date": datetime(2025, 6, 2)})
        done = tasks.sync_destinations({"logical_date": datetime(2025, 6, 2)})
    assert [s["acknowledged"] for s in done["segments"]] == [37, 37]
    assert_exactly_once(rec.received)


def test_customer_erasure_reaches_the_sync_log(env):
    """erase-customer deletes from every base table with a customer_id: the log must be one (it names customers)."""
    from c360.privacy.erasure import discover_tables

    with Receiver() as rec:
        run_sync(env, rec.url)
    con = duckdb.connect(str(get_settings().warehouse_path), read_only=True)
    try:
        swept = {(t.schema, t.name): t.id_columns for t in discover_tables(con)}
    finally:
        con.close()
    assert swept[("activation", "sync_log")] == ("customer_id",)


def test_a_timed_out_request_is_resent_and_applied_once(env, monkeypatch):
    """The receiver applies the batch but answers after the client's timeout: the client cannot know, resends the
    same batch with the same keys, and the receiver applies nothing twice."""
    monkeypatch.setenv("C360_SYNC_TIMEOUT_SECONDS", "0.3")
    with Receiver(faults=["slow:1"]) as rec:
        result = run_sync(env, rec.url)
    assert not result.failed
    assert_exactly_once(rec.received)
    first_batch = {m for m, n in rec.received.deliveries.items() if n == 2}
    assert len(first_batch) == BATCH and set(rec.received.replayed) == first_batch


def test_backoff_is_bounded_jittered_and_retry_after_dates_are_read():
    import random
    from datetime import UTC, datetime, timedelta
    from email.utils import format_datetime

    from c360.marketing.activation.destinations import RetryPolicy, retry_after_seconds

    policy = RetryPolicy(base_seconds=0.5, max_seconds=4, budget_seconds=60)
    rng = random.Random(7)
    waits = [[policy.backoff(a, rng) for _ in range(200)] for a in (1, 2, 3, 6, 40)]
    assert [round(max(w), 1) for w in waits] == [0.5, 1.0, 2.0, 4.0, 4.0]  # doubling, capped
    assert all(min(w) >= 0 for w in waits) and len({round(x, 6) for x in waits[3]}) > 150  # jittered
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert retry_after_seconds("7") == 7.0
    assert retry_after_seconds(format_datetime(now + timedelta(seconds=30), usegmt=True), now.timestamp()) == 30.0
    assert retry_after_seconds("soon") is None and retry_after_seconds(None) is None
