"""One landed file -> its text table: the project's own formats (readers) or a tracking vendor's (vendors).

This dispatch sits above both so that the vendor adapters can reuse the readers' helpers without an import cycle.
"""

from __future__ import annotations

import pyarrow as pa

from c360.ingest.contract import JSON_FORMATS, Entity
from c360.ingest.readers import (
    UnreadableFile,
    file_format,
    read_csv,
    read_jsonl,
    read_parquet,
    tracking_vendor,
)
from c360.ingest.vendors import read_vendor_file


def read_landed_file(data: bytes, key: str, entity: Entity) -> pa.Table:
    """Text columns of the entity (missing ones null) + _source_line, _malformed, _record, _schema_problem, _bot."""
    vendor = tracking_vendor(key)
    if vendor:
        return read_vendor_file(vendor, data, key, entity)
    fmt = file_format(key)
    if fmt in (".csv", ".csv.gz"):
        return read_csv(data, key, entity)
    if fmt == ".parquet":
        return read_parquet(data, key, entity)
    if fmt in JSON_FORMATS:
        return read_jsonl(data, key, entity)
    raise UnreadableFile(f"{key}: unsupported file type; expected one of {', '.join(entity.formats)}")
