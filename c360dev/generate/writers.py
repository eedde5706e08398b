"""Render one day's rows of each entity into the bytes of its landing file (CSV, gzip JSON lines, Parquet).

Text is assembled column-wise with pyarrow string kernels; a file's content is the data buffer of one string
array whose elements are the lines. Output depends only on the rows (no clocks, gzip mtime 0), so the same
rows always give the same bytes.
"""

from __future__ import annotations

import io
import zlib
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from c360dev.generate import ids
from c360dev.generate.calendar import DAY_S, period_label
from c360dev.generate.dirt import MALFORMED_RECORD_CODE
from c360dev.generate.model import CHANNELS, Catalog, Customers, flat_brands, flat_subcategories
from c360dev.generate.reference import (
    ACQUISITION_CHANNELS,
    CATEGORIES,
    COUNTRIES,
    CURRENCY_CODES,
    DEVICE_COMBOS,
    EMAIL_DOMAINS,
    FIRST_NAMES,
    LAST_NAMES,
    SHOP_URL,
    TRAFFIC_SOURCES,
)
from c360dev.generate.tracking import (
    EVENT_TYPES,
    PAGES,
    PURCHASE,
    Devices,
    Events,
    Sessions,
    search_vocabulary,
)

TRANSACTION_COLUMNS = [
    "order_id",
    "line_id",
    "customer_id",
    "ordered_at",
    "product_id",
    "quantity",
    "unit_price",
    "discount",
    "amount",
    "currency",
    "status",
    "channel",
    "line_type",
    "returned_at",
    "is_test",
    "updated_at",
]
MINIMAL_TRANSACTION_COLUMNS = ["customer_id", "order_id", "ordered_at", "amount"]
GZIP_LEVEL = 2


def gzip_bytes(data) -> bytes:
    """gzip container with mtime 0 and no file name, so equal input gives equal bytes."""
    comp = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31)
    return comp.compress(data) + comp.flush()


def _masked(values: np.ndarray, null: np.ndarray) -> pa.Array:
    return pa.array(values, mask=null)


def _lookup(table: pa.Array, index: np.ndarray, null: np.ndarray | None = None) -> pa.Array:
    idx = pa.array(index) if null is None else pa.array(index, mask=null)
    return pc.take(table, idx)


def _field(name: str, values: pa.Array, quoted: bool = True) -> pa.Array:
    """',"name":"value"' per row, null where the value is null (then skipped in the line)."""
    if quoted:
        return pc.binary_join_element_wise(f',"{name}":"', values, '"', "")
    return pc.binary_join_element_wise(f',"{name}":', values, "")


@dataclass
class Lookups:
    """String tables built once per run and indexed per day."""

    customer_id: pa.Array
    product_id: pa.Array
    anonymous_id: pa.Array
    event_type: pa.Array
    channel: pa.Array
    currency: pa.Array
    device_type: pa.Array
    os: pa.Array
    browser: pa.Array
    referrer: pa.Array
    utm_source: pa.Array
    utm_medium: pa.Array
    utm_family: pa.Array
    static_url: pa.Array
    query: pa.Array
    query_url: pa.Array
    first_name: pa.Array
    last_name: pa.Array
    first_lower: pa.Array
    last_lower: pa.Array
    domain: pa.Array


def build_lookups(c: Customers, cat: Catalog | None, devices: Devices | None, seed: int) -> Lookups:
    vocab, _ = search_vocabulary()
    n_dev = devices.combo.size if devices is not None else 0
    s = pa.array
    return Lookups(
        customer_id=ids.customer_ids(np.arange(c.n), c.n),
        product_id=ids.product_ids(np.arange(cat.n)) if cat is not None else s([], pa.string()),
        anonymous_id=ids.hex_strings(np.arange(n_dev), anon_salt(seed)),
        event_type=s(EVENT_TYPES),
        channel=s(CHANNELS),
        currency=s(CURRENCY_CODES),
        device_type=s([d[0] for d in DEVICE_COMBOS]),
        os=s([d[1] for d in DEVICE_COMBOS]),
        browser=s([d[2] for d in DEVICE_COMBOS]),
        referrer=s([t[1] for t in TRAFFIC_SOURCES], pa.string()),
        utm_source=s([t[2] for t in TRAFFIC_SOURCES], pa.string()),
        utm_medium=s([t[3] for t in TRAFFIC_SOURCES], pa.string()),
        utm_family=s([t[4] for t in TRAFFIC_SOURCES], pa.string()),
        static_url=s([SHOP_URL + p for p in PAGES]),
        query=s(vocab),
        query_url=s([SHOP_URL + "/search?q=" + q.replace(" ", "+") for q in vocab]),
        first_name=s(FIRST_NAMES),
        last_name=s(LAST_NAMES),
        first_lower=s([x.lower() for x in FIRST_NAMES]),
        last_lower=s([x.lower() for x in LAST_NAMES]),
        domain=s(EMAIL_DOMAINS),
    )


def event_salt(seed: int) -> int:
    return (int(seed) * 0x9E3779B97F4A7C15 + 0x1234567) & 0xFFFFFFFFFFFFFFFF


def anon_salt(seed: int) -> int:
    return (int(seed) * 0xC2B2AE3D27D4EB4F + 0x7654321) & 0xFFFFFFFFFFFFFFFF


def transactions_header(minimal: bool) -> bytes:
    return (",".join(MINIMAL_TRANSACTION_COLUMNS if minimal else TRANSACTION_COLUMNS) + "\n").encode()


def transaction_lines(rows: dict[str, np.ndarray], lk: Lookups, minimal: bool) -> pa.Array:
    """CSV lines (each ending in a newline, no header) of transaction rows, already in file order."""
    if rows["order_no"].size == 0:
        return pa.array([], pa.string())
    cols = {
        "order_id": ids.order_ids(rows["order_no"]),
        "customer_id": _lookup(lk.customer_id, np.maximum(rows["cust"], 0), rows["cust"] < 0),
        "ordered_at": ids.timestamps(rows["ordered_at"]),
        "amount": ids.money(rows["amount"]),
    }
    names = MINIMAL_TRANSACTION_COLUMNS if minimal else TRANSACTION_COLUMNS
    if not minimal:
        ret = rows["line_type"] == 1
        cols.update(
            {
                "line_id": pa.array(rows["line_id"]).cast(pa.string()),
                "product_id": _lookup(lk.product_id, np.maximum(rows["product"], 0), rows["product"] < 0),
                "quantity": pa.array(rows["quantity"]).cast(pa.string()),
                "unit_price": ids.money(rows["unit_cents"]),
                "discount": ids.money(rows["discount_cents"]),
                "currency": _lookup(lk.currency, rows["currency"]),
                "status": pc.if_else(pa.array(rows["status"] == 1), "cancelled", "completed"),
                "channel": _lookup(lk.channel, rows["channel"]),
                "line_type": pc.if_else(pa.array(ret), "return", "sale"),
                "returned_at": ids.timestamps(rows["returned_at"]),
                "is_test": pc.if_else(pa.array(rows["is_test"]), "true", "false"),
                "updated_at": ids.timestamps(rows["updated_at"]),
            }
        )
    parts = []
    for i, name in enumerate(names):
        parts += ([","] if i else []) + [cols[name]]
    return pc.binary_join_element_wise(*parts, "\n", "", null_handling="replace", null_replacement="")


def tracking_lines(
    rows: dict[str, np.ndarray], ev: Events, s: Sessions, devices: Devices, lk: Lookups, seed: int
) -> pa.Array:
    """JSON lines of tracking rows (fields that are null are left out of the object); malformed rows broken."""
    n = rows["src"].size
    if n == 0:
        return pa.array([], pa.string())
    src = rows["src"]
    sess = ev.session[src]
    etype = ev.etype[src]
    cust = ev.customer[src]
    product = ev.product[src]
    query = ev.query[src]
    page = ev.page[src]
    qty = ev.quantity[src]
    entry = ev.entry[src]
    device = s.device[sess]
    combo = devices.combo[device]
    source = s.source[sess]
    order = s.order[sess]

    no_product = product < 0
    url = pc.coalesce(
        _lookup(lk.static_url, np.maximum(page, 0), page < 0),
        pc.binary_join_element_wise(
            SHOP_URL + "/p/", _lookup(lk.product_id, np.maximum(product, 0), no_product), ""
        ),
        _lookup(lk.query_url, np.maximum(query, 0), query < 0),
    )
    is_purchase = etype == PURCHASE
    if is_purchase.any():
        order_text = ids.order_ids(
            np.where(is_purchase, ids.ORDER_BASE + 10 * (order.astype(np.int64) + 1), -1)
        )
    else:
        order_text = pa.nulls(n, pa.string())
    # Referrer and campaign fields belong to the landing event of a session only.
    not_entry = ~entry
    local_day = (rows["t"] + s.offset_s[sess]) // DAY_S
    d0 = int(local_day.min())
    labels = pa.array(period_label(np.arange(d0, int(local_day.max()) + 1)))
    family = _lookup(lk.utm_family, source, not_entry)
    campaign = pc.binary_join_element_wise(family, pc.take(labels, pa.array(local_day - d0)), "_")

    parts = [
        '{"event_id":"',
        ids.uuid_strings(rows["eid"], event_salt(seed)),
        '","event_type":"',
        _lookup(lk.event_type, etype),
        '","occurred_at":"',
        ids.timestamps(rows["t"], s.offset_s[sess]),
        '","anonymous_id":"',
        pc.take(lk.anonymous_id, pa.array(device)),
        '"',
        _field("customer_id", _lookup(lk.customer_id, np.maximum(cust, 0), cust < 0)),
        _field("page_url", url),
        _field("product_id", _lookup(lk.product_id, np.maximum(product, 0), no_product)),
        _field("search_query", _lookup(lk.query, np.maximum(query, 0), query < 0)),
        _field("order_id", order_text),
        _field("quantity", _masked(qty.astype(np.int64), qty == 0).cast(pa.string()), quoted=False),
        _field("device_type", pc.take(lk.device_type, pa.array(combo))),
        _field("os", pc.take(lk.os, pa.array(combo))),
        _field("browser", pc.take(lk.browser, pa.array(combo))),
        _field("referrer", _lookup(lk.referrer, source, not_entry)),
        _field("utm_source", _lookup(lk.utm_source, source, not_entry)),
        _field("utm_medium", _lookup(lk.utm_medium, source, not_entry)),
        _field("utm_campaign", campaign),
        "}\n",
    ]
    lines = pc.binary_join_element_wise(*parts, "", null_handling="skip")
    broken = rows["kind"] == MALFORMED_RECORD_CODE
    if broken.any():
        # A broken line: the first 60 % of a real line, so a JSON parser stops inside a string or value.
        texts = [t[: int(len(t) * 0.6)] + "\n" for t in lines.filter(pa.array(broken)).to_pylist()]
        lines = pc.replace_with_mask(lines, pa.array(broken), pa.array(texts, pa.string()))
    return lines


def split_payload(lines: pa.Array, counts: list[int]) -> list[memoryview]:
    """The text of consecutive groups of `counts` lines each, as views into the array's data buffer."""
    lines = pa.concat_arrays([lines]) if lines.offset else lines
    if len(lines) == 0:
        return [memoryview(b"") for _ in counts]
    offsets = np.frombuffer(lines.buffers()[1], dtype=np.int32, count=len(lines) + 1)
    data = memoryview(lines.buffers()[2])
    bounds = np.concatenate([[0], np.cumsum(counts)])
    return [data[offsets[a] : offsets[b]] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def _utc_timestamps(t: np.ndarray) -> pa.Array:
    return pa.array(np.asarray(t, dtype=np.int64) * 1_000_000, pa.int64()).cast(pa.timestamp("us", tz="UTC"))


def _parquet_bytes(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd", use_dictionary=True, write_statistics=True)
    return sink.getvalue()


def render_customers(rows: dict[str, np.ndarray], c: Customers, lk: Lookups) -> bytes:
    cust = rows["cust"]
    first, last = c.first_name[cust], c.last_name[cust]
    domain = c.email_domain[cust].astype(np.int64)
    number = pa.array(cust + 1).cast(pa.string())
    # Version 0: first.last.N@domain; after an email change: firstl_N@another domain.
    old = pc.binary_join_element_wise(
        _lookup(lk.first_lower, first),
        ".",
        _lookup(lk.last_lower, last),
        ".",
        number,
        "@",
        _lookup(lk.domain, domain),
        "",
    )
    new = pc.binary_join_element_wise(
        _lookup(lk.first_lower, first),
        pc.utf8_slice_codeunits(_lookup(lk.last_lower, last), 0, 1),
        "_",
        number,
        "@",
        _lookup(lk.domain, (domain + 1) % len(EMAIL_DOMAINS)),
        "",
    )
    table = pa.table(
        {
            "customer_id": pc.take(lk.customer_id, pa.array(cust)),
            "email": pc.if_else(pa.array(rows["email_v"] == 1), new, old),
            "first_name": _lookup(lk.first_name, first),
            "last_name": _lookup(lk.last_name, last),
            "signup_at": _utc_timestamps(c.signup[cust]),
            "country": pa.array([x[0] for x in COUNTRIES]).take(pa.array(c.country[cust])),
            "acquisition_channel": pa.array([x[0] for x in ACQUISITION_CHANNELS]).take(
                pa.array(c.acquisition[cust])
            ),
            "marketing_consent": pa.array(rows["consent"]),
            "consent_updated_at": _utc_timestamps(rows["consent_updated_at"]),
            "updated_at": _utc_timestamps(rows["updated_at"]),
        }
    )
    return _parquet_bytes(table)


def render_products(rows: dict[str, np.ndarray], cat: Catalog, lk: Lookups) -> bytes:
    prod = rows["product"]
    subs, brands = flat_subcategories(), flat_brands()
    table = pa.table(
        {
            "product_id": pc.take(lk.product_id, pa.array(prod)),
            "name": pa.array(cat.name).take(pa.array(prod)),
            "category": pa.array([x[0] for x in CATEGORIES]).take(pa.array(cat.category[prod])),
            "subcategory": pa.array([x[1] for x in subs]).take(pa.array(cat.subcategory[prod])),
            "brand": pa.array([x[1] for x in brands]).take(pa.array(cat.brand[prod])),
            "price": ids.money(rows["price"]).cast(pa.decimal128(12, 2)),
            "currency": pa.array(["EUR"] * prod.size, pa.string()),
            "updated_at": _utc_timestamps(rows["updated_at"]),
        }
    )
    return _parquet_bytes(table)
