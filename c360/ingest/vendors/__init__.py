"""Tracking vendor adapters: a landed vendor file -> the canonical tracking columns (docs/tracking_vendors.md).

Each vendor module has a pure `map_record(record, vendor) -> dict` from one parsed record (a JSON object, or a
Snowplow TSV line as a dict of its fields) to the canonical text columns of the TRACKING entity, plus `vendor`,
`vendor_event_name`, `vendor_extra` (JSON of every field the mapping does not use) and `_bot` (why the vendor
marks the event as a bot, else None). A record the mapping cannot read raises VendorRecordError and is kept as a
malformed record (quarantined `malformed_record`, its text kept): every landed line is loaded or quarantined.

Validation, duplicates and quarantine are ingestion's, exactly as for the project's own format.
"""

from __future__ import annotations

from pathlib import PurePosixPath

import pyarrow as pa

from c360.ingest.contract import Entity
from c360.ingest.readers import UnreadableFile, _decompress, _text_table, _utf8
from c360.ingest.vendors import ga4, segment, snowplow
from c360.ingest.vendors.common import VendorRecordError, loads

# landing folder (tracking/<vendor>/) -> the module that maps its records
ADAPTERS = {"snowplow": snowplow, "segment": segment, "rudderstack": segment, "ga4": ga4}

__all__ = ["ADAPTERS", "VendorRecordError", "map_lines", "read_vendor_file"]


def _is_tsv(key: str) -> bool:
    name = PurePosixPath(key).name.lower()
    return name.endswith((".tsv", ".tsv.gz"))


def map_lines(vendor: str, lines: list[str], tsv: bool, columns: list[str]):
    """Map text lines of one file. Returns (rows as lists in `columns` order + [_bot], numbers, malformed flags,
    record texts). Blank lines are not records; line numbers count every line of the file, from 1."""
    adapter = ADAPTERS[vendor]
    parse = adapter.parse_tsv if tsv else loads
    # a TSV line's fields are the reader's own, already non-empty text: the adapter may skip re-checking them
    map_record = getattr(adapter, "map_tsv_record", adapter.map_record) if tsv else adapter.map_record
    keys = [*columns, "_bot"]
    empty = [None] * len(keys)
    rows, numbers, malformed, records = [], [], [], []
    for number, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        text = text.rstrip("\r")
        try:
            obj = parse(text)
            if not isinstance(obj, dict):
                raise VendorRecordError("not a JSON object")
            out = map_record(obj, vendor)
            get = out.get
            row = [get(c) for c in keys]
            bad = False
        except (ValueError, VendorRecordError, TypeError, AttributeError, KeyError):
            row, bad = empty, True
        rows.append(row)
        numbers.append(number)
        malformed.append(bad)
        records.append(text)
    return rows, numbers, malformed, records


def read_vendor_file(vendor: str, data: bytes, key: str, entity: Entity) -> pa.Table:
    """A vendor's landed file as the same text table the own-format readers return (readers._text_table)."""
    if vendor not in ADAPTERS:
        raise UnreadableFile(f"{key}: no adapter for tracking vendor {vendor!r} (known: {', '.join(ADAPTERS)})")
    tsv = _is_tsv(key)
    if tsv and vendor != "snowplow":
        raise UnreadableFile(f"{key}: tab-separated files are read only for snowplow (enriched events); "
                             f"{vendor} lands JSON lines")
    raw = _decompress(data, key)
    text = _utf8(raw, key)
    columns = entity.column_names
    rows, numbers, malformed, records = map_lines(vendor, text.split("\n"), tsv, columns)
    # transposed in C (zip), one tuple per column; no rows: empty columns
    transposed = list(zip(*rows, strict=True)) or [()] * (len(columns) + 1)
    cols = dict(zip(columns, transposed, strict=False))
    bots = transposed[-1]
    # the vendor's fields are not the contract's columns: no schema_mismatch; unknown fields go to vendor_extra
    return _text_table(entity, cols, numbers, malformed, records, None, bots)
