"""Byte-exact, deterministic serialisation of export tables (CSV and Parquet) and their read-back checks.

Same rows in -> same bytes out: rows are sorted by the query, floats are written in their shortest exact
form, Parquet gets an explicit schema (never inferred from the data), and nothing time-dependent is stored.
"""

from __future__ import annotations

import csv
import io
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import pyarrow as pa

# Every column an export file can hold, with its Parquet type (CSV is text; the doc lists both).
COLUMN_TYPES: dict[str, pa.DataType] = {
    "customer_id": pa.string(),
    "email": pa.string(),
    "first_name": pa.string(),
    "last_name": pa.string(),
    "segment": pa.string(),
    "change": pa.string(),
    "churn_probability": pa.float64(),
    "churn_decile": pa.int32(),
    "p_alive": pa.float64(),
    "predicted_value_eur": pa.float64(),
    "value_decile": pa.int32(),
    "rec_1": pa.string(),
    "rec_2": pa.string(),
    "rec_3": pa.string(),
    "run_id": pa.string(),
    "as_of_date": pa.date32(),
    "churn_model_version": pa.string(),
    "clv_model_version": pa.string(),
    "recommender_model_version": pa.string(),
    "feature_snapshot_date": pa.date32(),
    # the next-best-action export
    "action": pa.string(),
    "product_id": pa.string(),
    "expected_value_eur": pa.float64(),
    "reason": pa.string(),
}


def _csv_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        import numpy as np

        # Shortest round-tripping digits, never scientific notation (CRM importers choke on 5e-05).
        return np.format_float_positional(value, trim="-")
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return format(value, "f")
    return str(value)


def to_csv_bytes(columns: list[str], rows: list[tuple]) -> bytes:
    """UTF-8 CSV, comma-separated, header row, \\n line ends, quotes only where needed, empty = null."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_csv_value(v) for v in row])
    return buf.getvalue().encode("utf-8")


def to_parquet_bytes(columns: list[str], rows: list[tuple]) -> bytes:
    import pyarrow.parquet as pq

    schema = pa.schema([pa.field(c, COLUMN_TYPES[c]) for c in columns])
    arrays = [pa.array([r[i] for r in rows], type=schema.field(i).type) for i in range(len(columns))]
    table = pa.Table.from_arrays(arrays, schema=schema)
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    return buf.getvalue()


def csv_rows_and_header(data: bytes) -> tuple[list[str], int]:
    """(header, data row count) of CSV bytes, parsed properly (quoted newlines count once)."""
    reader = csv.reader(io.StringIO(data.decode("utf-8")))
    header = next(reader, [])
    return header, sum(1 for _ in reader)


def parquet_rows_and_header(data: bytes) -> tuple[list[str], int]:
    import pyarrow.parquet as pq

    meta = pq.read_metadata(io.BytesIO(data))
    return list(meta.schema.names), meta.num_rows


def rows_and_header(name: str, data: bytes) -> tuple[list[str], int]:
    return parquet_rows_and_header(data) if name.endswith(".parquet") else csv_rows_and_header(data)
