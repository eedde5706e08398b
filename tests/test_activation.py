"""Destination sync on the real dbt view pii.segment_export_rows (its SQL, as tests/test_exports.py builds it): the
changes sent are exactly the consenting, addressable rows of the night's published entered/exited files."""

from __future__ import annotations

import hashlib
from datetime import date

import pytest

from c360.marketing.activation.destinations import parse_destinations
from c360.marketing.activation.sync import sync_date
from c360.marketing.exports import export_segments
from c360.storage import open_storage
from c360dev.receiver import Receiver
from tests.test_exports import D2, SEGMENTS, build_warehouse, file_key, read_csv


@pytest.fixture
def exported(c360_env):
    build_warehouse(c360_env.warehouse_path)
    return c360_env, export_segments(D2, c360_env, segments=SEGMENTS)


def test_sends_the_exported_changes_that_carry_an_email_and_nothing_else(exported):
    settings, manifest = exported
    storage = open_storage(settings.export_uri)
    expected = {}
    for seg in ("loyal", "service"):
        for kind in ("entered", "exited"):
            for row in read_csv(storage, file_key(manifest, seg, kind)):
                if row["email"]:  # blank = no marketing consent (the export's rule): never sent
                    key = hashlib.sha256(f"{seg}|{D2}|{row['customer_id']}".encode()).hexdigest()
                    expected[key] = (seg, D2.isoformat(), row["change"],
                                     hashlib.sha256(row["email"].strip().lower().encode()).hexdigest())
    with Receiver() as rec:
        [cfg] = parse_destinations({"destinations": [
            {"name": "crm", "type": "http_json", "url": rec.url, "segments": ["loyal", "service"]}]}, SEGMENTS)
        result = sync_date(D2, settings, [cfg], SEGMENTS)
    assert not result.failed
    # D2 vs D1: loyal +c4 (consent) +c5 (no consent) -c3 (consent); service +c6 (no consent) -c1 (consent)
    assert sorted((v[0], v[2]) for v in expected.values()) == [
        ("loyal", "entered"), ("loyal", "exited"), ("service", "exited")]
    assert rec.received.applied == expected


def test_a_date_that_was_not_exported_is_not_synced(exported):
    from c360.marketing.activation.sync import NotExported

    settings, _ = exported
    [cfg] = parse_destinations({"destinations": [
        {"name": "crm", "type": "http_json", "url": "http://127.0.0.1:9/x", "segments": ["loyal"]}]}, SEGMENTS)
    with pytest.raises(NotExported, match=str(date(2025, 6, 1))):
        sync_date(date(2025, 6, 1), settings, [cfg], SEGMENTS)


def test_a_segment_no_destination_syncs_is_refused_by_name(exported):
    from c360.marketing.activation.destinations import SyncError

    settings, _ = exported
    [cfg] = parse_destinations({"destinations": [
        {"name": "crm", "type": "http_json", "url": "http://127.0.0.1:9/x", "segments": ["loyal"]}]}, SEGMENTS)
    with pytest.raises(SyncError, match="segment\\(s\\) service are not synced by any destination"):
        sync_date(D2, settings, [cfg], SEGMENTS, only_segments=["service"])


def test_the_example_destinations_file_is_valid():
    from pathlib import Path

    import yaml

    from c360.marketing.segments import load_segments

    path = Path(__file__).resolve().parents[1] / "infra" / "destinations.example.yml"
    segments = load_segments()
    crm, ads = parse_destinations(yaml.safe_load(path.read_text()), segments, source=str(path))
    assert crm.segment_names(segments) == ["high_value_at_risk", "win_back", "new_customer_nurture"]
    assert ads.segment_names(segments) == [s.name for s in segments if s.destination == "ads"]
