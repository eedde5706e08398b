"""Dirt: contract-breaking (and contract-testing) rows injected into the landed data at configurable rates.

Each dirt row is a copy of, or a change to, one clean row with exactly one defect, so the quarantine reason the
ingestion should give it is unambiguous (`DirtKind.reason`; None = the row is loaded normally). The number of
rows of a kind is round(rate * scale * clean rows of its entity), drawn without replacement from clean rows, and
every such row is listed in the ground-truth manifest dirt.parquet.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import numpy as np

from c360dev.generate.calendar import DAY_S
from c360dev.generate.reference import CURRENCY_CODES, UNKNOWN_CURRENCIES


@dataclass(frozen=True)
class DirtConfig:
    """Rate of each dirt kind, per clean row of its entity; `scale` multiplies all, `enabled=False` disables all."""

    duplicate_transactions: float = 0.002  # exact copy of a line, same file or next day's file
    resent_lines: float = (
        0.002  # same order_id+line_id+line_type, new amount, later updated_at, 1-3 days later
    )
    missing_customer_id: float = 0.001
    negative_quantity: float = 0.0005  # negative quantity and amount on a sale line
    unknown_currency: float = 0.0005  # 'XXX' / 'ZZZ'
    future_transactions: float = 0.0005  # ordered_at/updated_at 1-30 days after the end of the file's dt
    test_orders: float = 0.001  # is_test=true
    duplicate_events: float = 0.002  # same event (same event_id), same file or next day's file
    late_events: float = 0.01  # the event lands 1-3 dt partitions after its occurred_at date
    malformed_events: float = 0.0005  # a truncated JSON line
    future_events: float = 0.0005  # occurred_at 1-30 days after the end of the file's dt
    scale: float = 1.0
    enabled: bool = True

    def count(self, name: str, clean_rows: int) -> int:
        if not self.enabled:
            return 0
        return int(round(getattr(self, name) * self.scale * clean_rows))

    def scaled(self, scale: float) -> DirtConfig:
        return replace(self, scale=scale)

    @classmethod
    def none(cls) -> DirtConfig:
        return cls(enabled=False)

    def rates(self) -> dict[str, float]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("scale", "enabled")}


@dataclass(frozen=True)
class DirtKind:
    code: int  # stored in the row tables' `kind` column (0 = clean)
    config: str  # DirtConfig field
    entity: str
    kind: str  # name in the manifest
    reason: str | None  # quarantine reason the ingestion should give; None = loaded


MALFORMED_RECORD_CODE = 10  # the writer breaks the JSON text of rows with this code

DIRT_KINDS = [
    DirtKind(1, "duplicate_transactions", "transactions", "duplicate_row", "duplicate_row"),
    DirtKind(2, "resent_lines", "transactions", "resent_line", None),
    DirtKind(3, "missing_customer_id", "transactions", "missing_customer_id", "missing_customer_id"),
    DirtKind(4, "negative_quantity", "transactions", "negative_quantity", "negative_quantity"),
    DirtKind(5, "unknown_currency", "transactions", "unknown_currency", "unknown_currency"),
    DirtKind(6, "future_transactions", "transactions", "future_timestamp", "future_timestamp"),
    DirtKind(7, "test_orders", "transactions", "test_order", "test_order"),
    DirtKind(8, "duplicate_events", "tracking", "duplicate_row", "duplicate_row"),
    DirtKind(9, "late_events", "tracking", "late_event", None),
    DirtKind(MALFORMED_RECORD_CODE, "malformed_events", "tracking", "malformed_record", "malformed_record"),
    DirtKind(11, "future_events", "tracking", "future_timestamp", "future_timestamp"),
]
KIND_BY_CODE = {k.code: k for k in DIRT_KINDS}
# Kinds that can be expressed with only customer_id, order_id, ordered_at, amount (--only-transactions).
MINIMAL_KINDS = {1, 2, 3, 4, 6}


def take_rows(rows: dict[str, np.ndarray], idx: np.ndarray) -> dict[str, np.ndarray]:
    return {k: v[idx] for k, v in rows.items()}


def concat_rows(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


class _Picker:
    """Draws disjoint random sets of eligible rows, so no row gets two kinds of dirt."""

    def __init__(self, rng: np.random.Generator, eligible: np.ndarray):
        self.pool = rng.permutation(np.nonzero(eligible)[0])
        self.used = np.zeros(eligible.size, bool)

    def take(self, n: int, ok: np.ndarray | None = None) -> np.ndarray:
        cand = self.pool[~self.used[self.pool]]
        if ok is not None:
            cand = cand[ok[cand]]
        chosen = np.sort(cand[:n])
        self.used[chosen] = True
        return chosen


def _future_time(rng, arrival: np.ndarray, start_s: int) -> np.ndarray:
    """An instant 1 to 30 days after the end of the arrival day: beyond any sensible future tolerance."""
    day_end = start_s + (arrival.astype(np.int64) + 1) * DAY_S
    return day_end + DAY_S + (rng.random(arrival.size) * 29 * DAY_S).astype(np.int64)


def inject_transactions(
    rows: dict[str, np.ndarray],
    cfg: DirtConfig,
    rng: np.random.Generator,
    start_s: int,
    days: int,
    minimal: bool,
    order_base: int,
) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """Clean transaction rows plus dirt rows (`kind` > 0); counts per DirtConfig field."""
    n_clean = rows["arrival"].size
    picker = _Picker(rng, rows["eligible"])
    parts = [rows]
    counts: dict[str, int] = {}
    for k in (k for k in DIRT_KINDS if k.entity == "transactions"):
        want = cfg.count(k.config, n_clean) if (not minimal or k.code in MINIMAL_KINDS) else 0
        ok = rows["arrival"] <= days - 2 if k.code == 2 else None  # a re-send needs a later partition
        chosen = picker.take(want, ok)
        counts[k.config] = int(chosen.size)
        if chosen.size == 0:
            continue
        d = take_rows(rows, chosen)
        d["kind"][:] = k.code
        d["copy"][:] = True
        d["eligible"][:] = False
        m = chosen.size
        if k.code == 1:  # exact duplicate: same file, or the next day's file
            later = (rng.random(m) < 0.5) & (d["arrival"] < days - 1)
            d["arrival"] = d["arrival"] + later
        elif k.code == 2:  # re-sent with a corrected discount 1-3 days later
            lag = np.minimum(1 + rng.integers(0, 3, m), days - 1 - d["arrival"])
            d["arrival"] = d["arrival"] + lag
            d["updated_at"] = start_s + d["arrival"].astype(np.int64) * DAY_S + rng.integers(0, DAY_S, m)
            base = d["amount"] if minimal else d["quantity"] * d["unit_cents"]
            delta = np.maximum(1, np.round(base * rng.uniform(0.03, 0.12, m))).astype(np.int64)
            if minimal:
                d["amount"] = d["amount"] - delta
            else:
                d["discount_cents"] = d["discount_cents"] + delta
                d["amount"] = base - d["discount_cents"]
        else:  # a new single-line order carrying exactly one defect
            d["order_no"] = order_base + 10 * (d["order_index"] + 1) + k.code
            d["line_id"][:] = 1
            if k.code == 3:
                d["cust"][:] = -1
            elif k.code == 4:
                d["quantity"] = -d["quantity"]
                d["amount"] = -d["amount"]
            elif k.code == 5:
                codes = np.array([CURRENCY_CODES.index(c) for c in UNKNOWN_CURRENCIES], dtype=np.int8)
                d["currency"] = codes[rng.integers(0, codes.size, m)]
            elif k.code == 6:
                d["ordered_at"] = _future_time(rng, d["arrival"], start_s)
                d["updated_at"] = d["ordered_at"]
            elif k.code == 7:
                d["is_test"][:] = True
        parts.append(d)
    return concat_rows(parts), counts


def inject_tracking(t: np.ndarray, cfg: DirtConfig, rng: np.random.Generator, start_s: int, days: int):
    """Row table of the tracking files: clean events plus dirt, and counts per DirtConfig field.

    Columns: src (clean event index the row renders), eid (event id number), t (occurred_at), arrival (day index),
    kind (0 clean, else dirt code) and copy (True for rows added next to an existing event).
    """
    m = t.size
    arrival = ((t - start_s) // DAY_S).astype(np.int32)
    kind = np.zeros(m, np.int8)
    picker = _Picker(rng, np.ones(m, bool))
    extra: list[dict[str, np.ndarray]] = []
    counts: dict[str, int] = {}
    next_eid = m
    for k in (k for k in DIRT_KINDS if k.entity == "tracking"):
        want = cfg.count(k.config, m)
        chosen = picker.take(want, arrival <= days - 2 if k.code == 9 else None)
        counts[k.config] = int(chosen.size)
        n = chosen.size
        if n == 0:
            continue
        if k.code == 9:  # late: the event itself moves to a later partition
            lag = np.minimum(1 + rng.integers(0, 3, n), days - 1 - arrival[chosen])
            arrival[chosen] += lag.astype(np.int32)
            kind[chosen] = k.code
            continue
        row = {
            "src": chosen.astype(np.int64),
            "arrival": arrival[chosen].copy(),
            "t": t[chosen].copy(),
            "eid": chosen.astype(np.int64),
            "kind": np.full(n, k.code, np.int8),
            "copy": np.ones(n, bool),
        }
        if k.code == 8:
            row["arrival"] = row["arrival"] + ((rng.random(n) < 0.5) & (row["arrival"] < days - 1))
        else:  # malformed and future rows get event ids of their own
            row["eid"] = np.arange(next_eid, next_eid + n, dtype=np.int64)
            next_eid += n
            if k.code == 11:
                row["t"] = _future_time(rng, row["arrival"], start_s)
        extra.append(row)
    clean = {
        "src": np.arange(m, dtype=np.int64),
        "arrival": arrival,
        "t": t,
        "eid": np.arange(m, dtype=np.int64),
        "kind": kind,
        "copy": np.zeros(m, bool),
    }
    return concat_rows([clean, *extra]) if extra else clean, counts
