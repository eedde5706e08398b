"""`generate()`: simulate the shop and land its data day by day, plus the ground truth the pipeline never reads.

Stages: model (customers, catalogue, orders, sessions, events, all in memory as numeric columns), dirt, then one
pass over the days that renders each dt partition (tracking rendered on a small thread pool) and writes it
through Storage (local: temporary '.tmp-' name then rename; s3://: one PUT per file).
"""

from __future__ import annotations

import io
import json
import logging
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from c360.config import get_settings
from c360.storage import Storage, open_storage
from c360dev.generate import ids
from c360dev.generate.calendar import DAY_S, HOUR_SHARE, Calendar, day_weight, promo_boost
from c360dev.generate.dirt import KIND_BY_CODE, DirtConfig, inject_tracking, inject_transactions, take_rows
from c360dev.generate.model import (
    ModelParams,
    catalog_size,
    make_catalog,
    make_customers,
    make_orders,
    rng_for,
)
from c360dev.generate.reference import CATEGORIES, COUNTRIES, CURRENCY_CODES, DEVICE_COMBOS, FX_PER_EUR
from c360dev.generate.rows import customer_rows, file_order, product_rows, transaction_rows
from c360dev.generate.tracking import make_events, make_sessions
from c360dev.generate.vendors import CANONICAL, TrackingFormat, canonical_to_vendor
from c360dev.generate.vendors import landing_key as vendor_landing_key
from c360dev.generate.writers import (
    anon_salt,
    build_lookups,
    event_salt,
    gzip_bytes,
    render_customers,
    render_products,
    split_payload,
    tracking_lines,
    transaction_lines,
    transactions_header,
)

log = logging.getLogger(__name__)

DEFAULT_START = "2025-10-01"
ENTITIES = ("customers", "products", "transactions", "tracking")
BATCH_ROWS = 250_000  # rows rendered per batch of days: bounds memory, amortises per-call overhead
BATCH_DAYS = 31
Progress = Callable[[dict], None]


@dataclass
class GenerateSummary:
    """What a run wrote: rows per entity (dirt included), dirt rows per kind, model volumes, files, time."""

    out: str
    truth_dir: str | None
    start: str
    days: int
    customers: int
    seed: int
    rows: dict[str, int] = field(default_factory=dict)
    dirt: dict[str, int] = field(default_factory=dict)
    volumes: dict[str, int] = field(default_factory=dict)
    files: int = 0
    bytes_written: int = 0
    seconds: float = 0.0
    tracking_format: str = CANONICAL  # as TrackingFormat writes it; "" without tracking
    tracking_sources: str = ""  # the C360_TRACKING_SOURCES a migration needs

    def as_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        lines = [
            f"generated {self.customers:,} customers x {self.days} days from {self.start} (seed {self.seed}) "
            f"in {self.seconds:.1f} s",
            f"  landing: {self.out}  ({self.files:,} files, {self.bytes_written / 1e6:,.1f} MB)",
            f"  ground truth: {self.truth_dir or '(not written)'}",
            "  rows: " + ", ".join(f"{k} {v:,}" for k, v in self.rows.items()),
            "  model: " + ", ".join(f"{k} {v:,}" for k, v in self.volumes.items()),
            "  dirt: " + (", ".join(f"{k} {v:,}" for k, v in self.dirt.items() if v) or "none"),
        ]
        if self.tracking_format not in ("", CANONICAL):
            lines.append(f"  tracking format: {self.tracking_format} (docs/tracking_vendors.md)")
        if self.tracking_sources:
            lines.append(f"  a migration: run the pipeline with C360_TRACKING_SOURCES=\"{self.tracking_sources}\" "
                         "or the overlap days count every visit twice")
        return "\n".join(lines)


def _log_progress(info: dict) -> None:
    if info["stage"] == "write":
        log.info(
            "day %d/%d written: %s rows, %.0f rows/s, %.1f s",
            info["days_done"],
            info["days"],
            f"{info['rows']:,}",
            info["rows_per_s"],
            info["seconds"],
        )
    else:
        log.info("%s (%.1f s)", info["message"], info["seconds"])


def unix_day(date: str) -> int:
    return int(np.datetime64(date, "D").astype(np.int64))


def dt_text(start_day: int, day_index: int) -> str:
    return str(np.datetime64(start_day + day_index, "D"))


def landing_key(entity: str, dt: str) -> str:
    name = {
        "transactions": f"transactions-{dt}.csv",
        "tracking": f"events-{dt}.jsonl.gz",
        "customers": f"customers-{dt}.parquet",
        "products": f"products-{dt}.parquet",
    }[entity]
    return f"{entity}/dt={dt}/{name}"


def tracking_key(tf: TrackingFormat, dt: str, fmt: str | None = None) -> str:
    """Where a day's tracking lands in format `fmt` (default: the first format writing that day)."""
    fmt = fmt or tf.writers(date.fromisoformat(dt))[0]
    if fmt == CANONICAL:
        return landing_key("tracking", dt)
    return vendor_landing_key(fmt, date.fromisoformat(dt), f"events-{dt}") + ".gz"


def _slices(arrival: np.ndarray, days: int) -> tuple[np.ndarray, np.ndarray]:
    """Row order grouped by arrival day (stable: keeps the table order within a day) and each day's start."""
    order = np.argsort(arrival.astype(np.int16), kind="stable")
    starts = np.searchsorted(arrival[order], np.arange(days + 1))
    return order, starts


def generate(
    out: Storage | str | Path,
    customers: int,
    days: int,
    seed: int,
    start: str = DEFAULT_START,
    truth_dir: str | Path | None = None,
    dirt: DirtConfig | None = None,
    tracking: bool = True,
    only_transactions: bool = False,
    progress: Progress | None = None,
    log_every: int | None = None,
    params: ModelParams | None = None,
    workers: int = 2,
    tracking_format: str | TrackingFormat = CANONICAL,
) -> GenerateSummary:
    """Generate `days` daily partitions from `start` for `customers` customers into `out` (a Storage or URI).

    truth_dir None: settings.data_dir/ground_truth. `only_transactions` writes just the four-column transactions
    contract (one row per order that was not cancelled) and no other entity. Same arguments, same bytes.
    `tracking_format`: 'canonical' (the own format, tracking/dt=D/), a vendor's (tracking/<vendor>/dt=D/, the
    same events converted by c360dev.generate.vendors) or a migration 'OLD>NEW@YYYY-MM-DD' (TrackingFormat).
    """
    if customers < 1 or not 1 <= days <= 30_000:
        raise ValueError(f"customers ({customers}) must be at least 1 and days ({days}) between 1 and 30000")
    settings = get_settings()
    t0 = time.monotonic()
    report = progress or _log_progress
    dirt = dirt if dirt is not None else DirtConfig()
    p = params or ModelParams()
    storage = (
        out if isinstance(out, Storage) else open_storage(str(out), endpoint_url=settings.s3_endpoint_url)
    )
    truth = Path(truth_dir) if truth_dir is not None else settings.data_dir / "ground_truth"
    if not storage.is_empty():
        log.warning(
            "%s already holds files: same-named partitions are overwritten, others are left", storage.uri
        )
    unknown = [c for c in FX_PER_EUR if c not in settings.currencies]
    if unknown:
        log.warning("currencies %s are not in C360_CURRENCIES: their rows will be quarantined", unknown)
    with_tracking = tracking and not only_transactions
    tf = tracking_format if isinstance(tracking_format, TrackingFormat) else TrackingFormat.parse(tracking_format)

    def stage(message: str) -> None:
        report({"stage": "model", "message": message, "seconds": time.monotonic() - t0})

    start_day = unix_day(start)
    start_s, end_s = start_day * DAY_S, (start_day + days) * DAY_S
    cal = Calendar(start_day - int(p.base_max_age_days) - 2, start_day + days + 366)
    cust = make_customers(customers, start_s, end_s, cal, seed, p)
    cat = make_catalog(catalog_size(customers), start_s, days, seed, p)
    orders = make_orders(cust, cat, start_s, end_s, cal, seed, p)
    stage(
        f"model: {cust.n:,} customers, {cat.n:,} products, {orders.n:,} orders, {orders.line_order.size:,} lines"
    )

    tx = transaction_rows(orders, cust, start_s, ids.ORDER_BASE, only_transactions)
    n_tx_clean = tx["arrival"].size
    tx, tx_counts = inject_transactions(
        tx, dirt, rng_for(seed, "dirt-transactions"), start_s, days, only_transactions, ids.ORDER_BASE
    )
    tx_order, tx_starts = file_order(
        tx["arrival"], days, tx["copy"], tx["line_id"], tx["line_type"], tx["order_no"], tx["updated_at"]
    )
    volumes = {
        "customers": cust.n,
        "products": cat.n,
        "orders": orders.n,
        "order_lines": int(orders.line_order.size),
        "transaction_rows_clean": int(n_tx_clean),
    }

    sessions = events = devices = trk = None
    trk_counts: dict[str, int] = {}
    if with_tracking:
        sessions, devices = make_sessions(cust, orders, start_s, end_s, cal, seed, p)
        events = make_events(sessions, cust, orders, cat, end_s, seed, p)
        trk, trk_counts = inject_tracking(events.t, dirt, rng_for(seed, "dirt-tracking"), start_s, days)
        volumes.update(sessions=sessions.n, events_clean=events.n)
        stage(f"tracking: {sessions.n:,} sessions, {events.n:,} events")
        trk_order, trk_starts = _slices(trk["arrival"], days)
        # Within a day: by occurred_at, then event, copies right after their original.
        for d in range(days):
            sl = trk_order[trk_starts[d] : trk_starts[d + 1]]
            trk_order[trk_starts[d] : trk_starts[d + 1]] = sl[
                np.lexsort((trk["copy"][sl], trk["src"][sl], trk["t"][sl]))
            ]

    cust_rows = prod_rows = None
    if not only_transactions:
        cust_rows = customer_rows(cust, start_s)
        cust_order, cust_starts = file_order(
            cust_rows["arrival"], days, cust_rows["cust"], cust_rows["updated_at"]
        )
        prod_rows = product_rows(cat, start_s)
        prod_order, prod_starts = file_order(
            prod_rows["arrival"], days, prod_rows["product"], prod_rows["updated_at"]
        )

    lk = build_lookups(cust, cat, devices, seed)
    summary = GenerateSummary(
        out=storage.uri,
        truth_dir=str(truth),
        start=start,
        days=days,
        customers=customers,
        seed=seed,
        volumes=volumes,
        tracking_format=str(tf) if with_tracking else "",
        tracking_sources=tf.tracking_sources() if with_tracking else "",
    )
    rows_written = dict.fromkeys(ENTITIES, 0) if not only_transactions else {"transactions": 0}
    if not with_tracking:
        rows_written.pop("tracking", None)

    def render_batch(d0: int, d1: int) -> list[tuple[str, str, bytes, int]]:
        """Files of days [d0, d1). Text is rendered for the whole batch at once (pyarrow calls have a fixed
        cost) and then cut per day: a row's text does not depend on its neighbours, so the bytes are the same."""
        files = []
        tx_counts = np.diff(tx_starts[d0 : d1 + 1]).tolist()
        tx_text = split_payload(
            transaction_lines(take_rows(tx, tx_order[tx_starts[d0] : tx_starts[d1]]), lk, only_transactions),
            tx_counts,
        )
        trk_text = trk_counts_ = None
        if trk is not None:
            trk_counts_ = np.diff(trk_starts[d0 : d1 + 1]).tolist()
            sl = trk_order[trk_starts[d0] : trk_starts[d1]]
            trk_text = split_payload(
                tracking_lines(take_rows(trk, sl), events, sessions, devices, lk, seed), trk_counts_
            )
        header = transactions_header(only_transactions)
        for i, d in enumerate(range(d0, d1)):
            dt = dt_text(start_day, d)
            if cust_rows is not None:
                sl = cust_order[cust_starts[d] : cust_starts[d + 1]]
                if sl.size:
                    files.append(
                        (
                            "customers",
                            landing_key("customers", dt),
                            render_customers(take_rows(cust_rows, sl), cust, lk),
                            sl.size,
                        )
                    )
                sl = prod_order[prod_starts[d] : prod_starts[d + 1]]
                if sl.size:
                    files.append(
                        (
                            "products",
                            landing_key("products", dt),
                            render_products(take_rows(prod_rows, sl), cat, lk),
                            sl.size,
                        )
                    )
            # Every day gets a transactions file (maybe header only): the ingestion waits for a missing partition.
            files.append(
                ("transactions", landing_key("transactions", dt), header + bytes(tx_text[i]), tx_counts[i])
            )
            if trk_text is not None:
                for fmt in tf.writers(date.fromisoformat(dt)):
                    text = trk_text[i] if fmt == CANONICAL else canonical_to_vendor(fmt, bytes(trk_text[i]))
                    files.append(("tracking", tracking_key(tf, dt, fmt), gzip_bytes(text), trk_counts_[i]))
        return files

    # Batches of days with about BATCH_ROWS rows (at least one day each).
    per_day = np.diff(tx_starts) + (np.diff(trk_starts) if trk is not None else 0)
    batches, d0, acc = [], 0, 0
    for d in range(days):
        acc += int(per_day[d])
        if acc >= BATCH_ROWS or d + 1 - d0 >= BATCH_DAYS or d + 1 == days:
            batches.append((d0, d + 1))
            d0, acc = d + 1, 0

    every = log_every or max(1, days // 10)
    stage("writing partitions")
    t_write = time.monotonic()
    done_rows = 0
    next_log = every
    # Batches render on a thread pool (pyarrow kernels and zlib release the GIL); writes stay in day order.
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        pending: deque = deque()
        queued = 0
        for b in batches:
            while workers > 1 and queued < len(batches) and len(pending) < 2 * workers:
                pending.append(pool.submit(render_batch, *batches[queued]))
                queued += 1
            rendered = pending.popleft().result() if workers > 1 else render_batch(*b)
            for entity, key, data, n in rendered:
                storage.write_bytes(key, data)
                summary.files += 1
                summary.bytes_written += len(data)
                rows_written[entity] += n
                done_rows += n
            if b[1] >= next_log or b[1] == days:
                next_log = (b[1] // every + 1) * every
                elapsed = time.monotonic() - t_write
                report(
                    {
                        "stage": "write",
                        "days_done": b[1],
                        "days": days,
                        "rows": done_rows,
                        "rows_per_s": done_rows / max(elapsed, 1e-9),
                        "seconds": time.monotonic() - t0,
                    }
                )
    summary.rows = rows_written

    manifest = _manifest(
        tx,
        tx_order,
        tx_starts,
        trk,
        trk_order if trk is not None else None,
        trk_starts if trk is not None else None,
        events,
        cust.n,
        start_day,
        seed,
        tf,
    )
    summary.dirt = {f"{k.entity}.{k.kind}": 0 for k in KIND_BY_CODE.values() if k.entity in rows_written}
    for entity, kind in zip(manifest["entity"].to_pylist(), manifest["kind"].to_pylist(), strict=True):
        summary.dirt[f"{entity}.{kind}"] += 1
    _write_truth(
        truth,
        cust,
        orders,
        devices,
        manifest,
        summary,
        cal,
        start_day,
        days,
        dirt,
        p,
        seed,
        only_transactions,
        with_tracking,
        tx_counts | trk_counts,
    )
    summary.seconds = time.monotonic() - t0
    log.info(
        "wrote %s files (%.1f MB) to %s and the ground truth to %s in %.1f s",
        f"{summary.files:,}",
        summary.bytes_written / 1e6,
        storage.uri,
        truth,
        summary.seconds,
    )
    return summary


def _manifest(
    tx, tx_order, tx_starts, trk, trk_order, trk_starts, events, n_customers, start_day, seed,
    tf: TrackingFormat | None = None,
) -> pa.Table:
    """One row per dirt row, with where it landed (file, 1-based row among the file's records) and its key."""
    parts = []
    dirty = np.nonzero(tx["kind"] > 0)[0]
    if dirty.size:
        position = np.empty(tx_order.size, np.int64)
        position[tx_order] = np.arange(tx_order.size)
        arrival = tx["arrival"][dirty]
        row_number = position[dirty] - tx_starts[arrival] + 1
        parts.append(
            {
                "entity": ["transactions"] * dirty.size,
                "kind_code": tx["kind"][dirty],
                "arrival": arrival,
                "row_number": row_number,
                "line_number": row_number + 1,  # the CSV header is line 1
                "order_id": ids.order_ids(tx["order_no"][dirty]),
                "line_id": tx["line_id"][dirty].astype(np.int64),
                "line_type": ["return" if x else "sale" for x in tx["line_type"][dirty].tolist()],
                "event_id": pa.nulls(dirty.size, pa.string()),
                "customer_id": ids.customer_ids(tx["cust"][dirty], n_customers),
            }
        )
    if trk is not None:
        dirty = np.nonzero(trk["kind"] > 0)[0]
        if dirty.size:
            position = np.empty(trk_order.size, np.int64)
            position[trk_order] = np.arange(trk_order.size)
            arrival = trk["arrival"][dirty]
            row_number = position[dirty] - trk_starts[arrival] + 1
            cust = events.customer[trk["src"][dirty]]
            parts.append(
                {
                    "entity": ["tracking"] * dirty.size,
                    "kind_code": trk["kind"][dirty],
                    "arrival": arrival,
                    "row_number": row_number,
                    "line_number": row_number,
                    "order_id": pa.nulls(dirty.size, pa.string()),
                    "line_id": pa.nulls(dirty.size, pa.int64()),
                    "line_type": pa.nulls(dirty.size, pa.string()),
                    "event_id": ids.uuid_strings(trk["eid"][dirty], event_salt(seed)),
                    "customer_id": ids.customer_ids(cust, n_customers),
                }
            )
    columns = [
        "entity",
        "kind",
        "expected_reason",
        "dt",
        "source_file",
        "row_number",
        "line_number",
        "order_id",
        "line_id",
        "line_type",
        "event_id",
        "customer_id",
    ]
    schema = pa.schema(
        [
            ("entity", pa.string()),
            ("kind", pa.string()),
            ("expected_reason", pa.string()),
            ("dt", pa.string()),
            ("source_file", pa.string()),
            ("row_number", pa.int64()),
            ("line_number", pa.int64()),
            ("order_id", pa.string()),
            ("line_id", pa.int64()),
            ("line_type", pa.string()),
            ("event_id", pa.string()),
            ("customer_id", pa.string()),
        ]
    )
    tables = []
    for part in parts:
        kinds = [KIND_BY_CODE[int(k)] for k in part["kind_code"].tolist()]
        dts = [dt_text(start_day, int(a)) for a in part["arrival"].tolist()]
        data = {
            "entity": part["entity"],
            "kind": [k.kind for k in kinds],
            "expected_reason": [k.reason for k in kinds],
            "dt": dts,
            # in a migration a tracking dirt row lands in both tags' files: the first (old) one is named
            "source_file": [tracking_key(tf, dt) if e == "tracking" and tf is not None else landing_key(e, dt)
                            for e, dt in zip(part["entity"], dts, strict=True)],
            "row_number": part["row_number"],
            "line_number": part["line_number"],
            "order_id": part["order_id"],
            "line_id": part["line_id"],
            "line_type": part["line_type"],
            "event_id": part["event_id"],
            "customer_id": part["customer_id"],
        }
        tables.append(pa.table({c: data[c] for c in columns}, schema=schema))
    if not tables:
        return schema.empty_table()
    table = pa.concat_tables(tables)
    return table.sort_by([("entity", "ascending"), ("dt", "ascending"), ("row_number", "ascending")])


def _write_parquet(storage: Storage, key: str, table: pa.Table) -> None:
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd")
    storage.write_bytes(key, sink.getvalue())


def _write_truth(
    truth: Path,
    c,
    o,
    devices,
    manifest,
    summary,
    cal,
    start_day,
    days,
    dirt,
    p,
    seed,
    only_transactions,
    with_tracking,
    dirt_counts,
) -> None:
    """Latent parameters per customer, devices, the dirt manifest, the calendar and summary.json."""
    store = open_storage(str(truth))
    end_s = (start_day + days) * DAY_S
    start_s = start_day * DAY_S
    cats = [x[0] for x in CATEGORIES]
    ts = pa.timestamp("us", tz="UTC")

    def stamp(t, valid=None):
        arr = pa.array(
            np.asarray(t, np.int64) * 1_000_000, pa.int64(), mask=None if valid is None else ~valid
        )
        return arr.cast(ts)

    alive_end = c.churn >= end_s
    orders_in_horizon = np.bincount(o.customer, minlength=c.n)
    affinity = pa.FixedSizeListArray.from_arrays(pa.array(c.affinity.ravel()), len(cats)).cast(
        pa.list_(pa.float32())
    )
    customers = pa.table(
        {
            "customer_id": ids.customer_ids(np.arange(c.n), c.n),
            "signup_at": stamp(c.signup),
            "country": pa.array([x[0] for x in COUNTRIES]).take(pa.array(c.country)),
            "currency": pa.array(CURRENCY_CODES).take(pa.array(c.currency)),
            "utc_offset_minutes": pa.array((c.offset_s // 60).astype(np.int32)),
            "lambda": pa.array(c.lam),
            "mu": pa.array(c.mu),
            "alive_at_start": pa.array(c.churn >= start_s),
            "churn_at": stamp(c.churn, ~alive_end),
            "alive_at_end": pa.array(alive_end),
            "spend_mean": pa.array(p.spend_p / c.spend_nu),
            "spend_nu": pa.array(c.spend_nu),
            "top_category": pa.array(cats).take(pa.array(np.argmax(c.affinity, axis=1))),
            "category_affinity": affinity,
            "browse_ratio": pa.array(c.browse_ratio),
            "store_share": pa.array(c.store_share),
            "consent_at_signup": pa.array(c.consent0),
            "orders_in_horizon": pa.array(orders_in_horizon.astype(np.int64)),
        }
    )
    _write_parquet(store, "customers.parquet", customers)
    _write_parquet(store, "dirt.parquet", manifest)

    cal_days = np.arange(start_day - int(p.base_max_age_days) - 2, start_day + days + 366)
    _write_parquet(
        store,
        "calendar.parquet",
        pa.table(
            {
                "date": pa.array(cal_days.astype("datetime64[D]")),
                "day_weight": pa.array(day_weight(cal_days)),
                "promo_boost": pa.array(promo_boost(cal_days)),
            }
        ),
    )
    if devices is not None:
        own = np.repeat(np.arange(c.n), c.dev_count)
        sharers = np.nonzero(c.shared_dev >= 0)[0]
        dev = np.concatenate(
            [np.arange(c.n_devices), c.shared_dev[sharers], np.arange(c.n_devices, devices.combo.size)]
        )
        owner = np.concatenate([own, sharers, np.full(devices.combo.size - c.n_devices, -1)])
        shared = np.isin(dev, c.shared_dev[sharers])
        combo = devices.combo[dev]
        _write_parquet(
            store,
            "devices.parquet",
            pa.table(
                {
                    "anonymous_id": ids.hex_strings(dev, anon_salt(seed)),
                    "customer_id": ids.customer_ids(owner, c.n),
                    "shared": pa.array(shared),
                    "device_type": pa.array([d[0] for d in DEVICE_COMBOS]).take(pa.array(combo)),
                    "os": pa.array([d[1] for d in DEVICE_COMBOS]).take(pa.array(combo)),
                    "browser": pa.array([d[2] for d in DEVICE_COMBOS]).take(pa.array(combo)),
                }
            ),
        )
    info = {
        "start": str(np.datetime64(start_day, "D")),
        "end_exclusive": str(np.datetime64(start_day + days, "D")),
        "days": days,
        "customers": c.n,
        "seed": seed,
        "only_transactions": only_transactions,
        "tracking": with_tracking,
        "rows": summary.rows,
        "volumes": summary.volumes,
        "dirt_rows": summary.dirt,
        "dirt_counts_by_config": dirt_counts,
        "dirt_config": {**dirt.rates(), "scale": dirt.scale, "enabled": dirt.enabled},
        "model_params": p.as_dict(),
        "hour_share": [round(float(x), 10) for x in HOUR_SHARE],
        "fx_per_eur": FX_PER_EUR,
        "categories": cats,
        "alive_at_end": int(alive_end.sum()),
        "calendar_first_day": str(np.datetime64(int(cal.first_day), "D")),
    }
    store.write_bytes("summary.json", (json.dumps(info, indent=2, sort_keys=True) + "\n").encode())
