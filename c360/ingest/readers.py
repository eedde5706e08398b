"""Read one landed file into an Arrow table of text columns, keeping each record's line number.

Every record of the file comes back: parseable ones as rows, unparseable ones (a CSV line with the wrong
number of fields, a JSON line that is not an object) as rows with `_malformed` set, so that ingestion can
quarantine them and `landed = loaded + quarantined` holds per file.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from pathlib import PurePosixPath

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from c360.ingest.contract import JSON_FORMATS, TRACKING_VENDORS, TSV_FORMATS, Entity, schema_problem


class UnreadableFile(Exception):
    """The file as a whole cannot be read (bad gzip, bad Parquet, not UTF-8). The message names the file and why;
    ingestion adds the landing URI and what to do."""


def _utf8(data: bytes, key: str) -> str:
    """The bytes as text, or UnreadableFile naming the first byte that is not UTF-8 (binary data, Latin-1...)."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise UnreadableFile(
            f"{key}: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}, line {line}): "
            "binary data or another encoding"
        ) from exc


def file_format(key: str) -> str | None:
    name = PurePosixPath(key).name.lower()
    for fmt in (".csv.gz", ".csv", ".parquet", *JSON_FORMATS, *TSV_FORMATS):
        if name.endswith(fmt):
            return fmt
    return None


def _decompress(data: bytes, key: str) -> bytes:
    if key.lower().endswith(".gz"):
        try:
            return gzip.decompress(data)
        except (OSError, EOFError) as exc:
            raise UnreadableFile(f"{key}: not a valid gzip file, or truncated ({exc})") from exc
    return data


def _text_table(
    entity: Entity, columns: dict[str, list], lines: list[int], malformed: list[bool], records: list,
    problem: str | None = None, bots: list | None = None,
) -> pa.Table:
    arrays = {c: pa.array(columns.get(c, [None] * len(lines)), pa.string()) for c in entity.column_names}
    arrays["_source_line"] = pa.array(lines, pa.int64())
    arrays["_malformed"] = pa.array(malformed, pa.bool_())
    arrays["_record"] = pa.array(records, pa.string())
    # the file's schema problem (schema_problem), the same on every row: the whole file is rejected
    arrays["_schema_problem"] = pa.array([problem] * len(lines), pa.string())
    # why the vendor marks the record as a bot (tracking vendor adapters), else null: quarantined as bot_traffic
    arrays["_bot"] = pa.array(bots if bots is not None else [None] * len(lines), pa.string())
    return pa.table(arrays)


def read_csv(data: bytes, key: str, entity: Entity) -> pa.Table:
    raw = _decompress(data, key)
    if not raw.strip():
        return _text_table(entity, {}, [], [], [])
    _utf8(raw, key)  # the whole file, so that a bad byte anywhere is named with its offset, not half-read
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]  # a UTF-8 byte order mark is not part of the first column's name
    header_end = raw.find(b"\n")
    header = raw[: header_end if header_end >= 0 else len(raw)].decode("utf-8").strip("\r")
    names = next(csv.reader([header]))
    norm = [n.strip().lower() for n in names]
    bad: list[tuple[int, str]] = []

    def on_invalid(row) -> str:
        bad.append((row.number, row.text))
        return "skip"

    try:
        table = pacsv.read_csv(
            io.BytesIO(raw),
            # single-threaded so that pyarrow reports the record number of each invalid row
            read_options=pacsv.ReadOptions(use_threads=False, column_names=norm, skip_rows=1, encoding="utf8"),
            parse_options=pacsv.ParseOptions(newlines_in_values=True, invalid_row_handler=on_invalid),
            convert_options=pacsv.ConvertOptions(
                column_types={n: pa.string() for n in norm},
                strings_can_be_null=True,
                null_values=[""],
                quoted_strings_can_be_null=True,
            ),
        )
    except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
        raise UnreadableFile(f"{key}: cannot be parsed as CSV ({exc})") from exc

    # Record numbers count the header as record 1; pyarrow reports bad rows' numbers on that scale.
    bad_numbers = {n for n, _ in bad}
    total = table.num_rows + len(bad)
    good_numbers = [n for n in range(2, total + 2) if n not in bad_numbers]
    cols = {c: table.column(c).to_pylist() for c in entity.landed_column_names if c in table.column_names}
    records = _records_as_json(table, entity)
    lines = good_numbers + [n for n, _ in bad]
    malformed = [False] * table.num_rows + [True] * len(bad)
    for c in cols:
        cols[c] = cols[c] + [None] * len(bad)
    records = records + [text for _, text in bad]
    return _text_table(entity, cols, lines, malformed, records, schema_problem(entity, norm))


def _records_as_json(table: pa.Table, entity: Entity) -> list[str]:
    names = table.column_names
    rows = table.to_pylist()
    return [json.dumps({n: r[n] for n in names}, ensure_ascii=False, separators=(",", ":")) for r in rows]


def read_parquet(data: bytes, key: str, entity: Entity) -> pa.Table:
    try:
        table = pq.read_table(io.BytesIO(data))
    except (pa.ArrowInvalid, OSError) as exc:
        raise UnreadableFile(f"{key}: cannot be read as Parquet, or truncated ({exc})") from exc
    table = table.rename_columns([n.strip().lower() for n in table.column_names])
    cols = {}
    for c in entity.landed_column_names:
        if c in table.column_names:
            col = table.column(c)
            if pa.types.is_timestamp(col.type):
                # ISO 8601 text keeps the instant: a tz-aware column gets its offset, a naive one is UTC.
                col = pa.compute.strftime(col, format="%Y-%m-%dT%H:%M:%S%z" if col.type.tz else "%Y-%m-%dT%H:%M:%S")
            cols[c] = pa.compute.cast(col, pa.string()).to_pylist()
    n = table.num_rows
    text_table = pa.table({c: pa.array(v, pa.string()) for c, v in cols.items()}) if cols else pa.table({})
    records = _records_as_json(text_table, entity) if cols else ["{}"] * n
    problem = schema_problem(entity, table.column_names)
    if problem:
        # keep every landed column in the record text, so that the rejected rows can be fixed and re-landed
        records = _records_as_json(pa.table({c: pa.compute.cast(table.column(c), pa.string())
                                             for c in table.column_names}), entity)
    return _text_table(entity, cols, list(range(1, n + 1)), [False] * n, records, problem)


def read_jsonl(data: bytes, key: str, entity: Entity) -> pa.Table:
    raw = _decompress(data, key)
    _utf8(raw, key)  # not UTF-8 = the file is unreadable, not a file of malformed lines
    cols: dict[str, list] = {c: [] for c in entity.landed_column_names}
    lines, malformed, records = [], [], []
    keys: dict[str, None] = {}  # every key of the file's objects, in order of appearance
    for number, line in enumerate(raw.split(b"\n"), start=1):
        if not line.strip():
            continue  # blank lines are not records
        text = line.decode("utf-8-sig" if number == 1 else "utf-8").rstrip("\r")
        try:
            obj = json.loads(text)
            ok = isinstance(obj, dict)
        except ValueError:
            ok = False
        lines.append(number)
        records.append(text)
        malformed.append(not ok)
        if ok:
            keys.update(dict.fromkeys(obj))
        for c in entity.landed_column_names:
            v = obj.get(c) if ok else None
            if v is not None and not isinstance(v, str):
                v = json.dumps(v) if isinstance(v, dict | list) else str(v).lower() if isinstance(v, bool) else str(v)
            cols[c].append(v if v != "" else None)
    # JSON objects may omit optional keys: a required key is missing only when no object of the file has it
    return _text_table(entity, cols, lines, malformed, records, schema_problem(entity, list(keys)))


def tracking_vendor(key: str) -> str | None:
    """The vendor of a key under tracking/<vendor>/dt=D/ (docs/tracking_vendors.md), or None (own format)."""
    parts = PurePosixPath(key).parts
    if len(parts) > 2 and parts[0] == "tracking" and parts[1] in TRACKING_VENDORS:
        return parts[1]
    return None
