"""Identifiers and text formatting shared by the writers and the ground truth: ids, timestamps, money.

Everything works on whole numpy arrays and returns pyarrow string arrays (no per-row Python).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from c360dev.generate.calendar import DAY_S

ORDER_BASE = (
    1_000_000_000  # order number = ORDER_BASE + 10 * (order index + 1); dirt orders use the +1..+9 slots
)
HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def mix64(x: np.ndarray, salt: int) -> np.ndarray:
    """A bijection of uint64 (splitmix64 finaliser after adding a salt): distinct inputs give distinct ids."""
    with np.errstate(over="ignore"):
        z = np.asarray(x, dtype=np.uint64) + np.uint64(salt & 0xFFFFFFFFFFFFFFFF)
        z = (z ^ (z >> np.uint64(30))) * _M1
        z = (z ^ (z >> np.uint64(27))) * _M2
        z = z ^ (z >> np.uint64(31))
    return z


def _hex_digits(x: np.ndarray) -> np.ndarray:
    """(n, 16) uint8 ASCII hex digits of uint64 values, most significant first."""
    shifts = np.arange(60, -4, -4, dtype=np.uint64)
    return HEX[((x[:, None] >> shifts[None, :]) & np.uint64(0xF)).astype(np.intp)]


def _fixed_strings(chars: np.ndarray) -> pa.Array:
    n, width = chars.shape
    buf = pa.py_buffer(np.ascontiguousarray(chars).tobytes())
    return (
        pa.FixedSizeBinaryArray.from_buffers(pa.binary(width), n, [None, buf])
        .cast(pa.binary())
        .cast(pa.string())
    )


def uuid_strings(numbers: np.ndarray, salt: int) -> pa.Array:
    """UUID-shaped ids (8-4-4-4-12 hex) that are unique for distinct numbers."""
    numbers = np.asarray(numbers, dtype=np.uint64)
    hi = _hex_digits(mix64(numbers, salt))
    lo = _hex_digits(mix64(numbers, salt ^ 0x5DEECE66D))
    dash = np.full((numbers.size, 1), ord("-"), np.uint8)
    chars = np.hstack([hi[:, :8], dash, hi[:, 8:12], dash, hi[:, 12:16], dash, lo[:, :4], dash, lo[:, 4:16]])
    return _fixed_strings(chars)


def hex_strings(numbers: np.ndarray, salt: int) -> pa.Array:
    """16-hex-digit ids, unique for distinct numbers (cookies)."""
    return _fixed_strings(_hex_digits(mix64(np.asarray(numbers, dtype=np.uint64), salt)))


def prefixed(prefix: str, numbers: np.ndarray, width: int) -> pa.Array:
    """'C0000123'-style ids from whole numbers; negative numbers give nulls."""
    numbers = np.asarray(numbers, dtype=np.int64)
    text = pc.utf8_lpad(pa.array(np.maximum(numbers, 0)).cast(pa.string()), width, "0")
    out = pc.binary_join_element_wise(prefix, text, "")
    if (numbers < 0).any():
        out = pc.if_else(pa.array(numbers >= 0), out, pa.nulls(numbers.size, pa.string()))
    return out


def customer_ids(index: np.ndarray, n_customers: int) -> pa.Array:
    return prefixed(
        "C",
        np.where(np.asarray(index) >= 0, np.asarray(index, np.int64) + 1, -1),
        customer_width(n_customers),
    )


def customer_width(n_customers: int) -> int:
    return max(7, len(str(n_customers)))


def product_ids(index: np.ndarray) -> pa.Array:
    return prefixed("P", np.where(np.asarray(index) >= 0, np.asarray(index, np.int64) + 1, -1), 5)


def order_ids(number: np.ndarray) -> pa.Array:
    return prefixed("O", number, 10)


@lru_cache(maxsize=1)
def _clock_strings() -> pa.Array:
    s = np.arange(DAY_S)
    h, m, sec = s // 3600, (s // 60) % 60, s % 60
    digits = np.stack([h // 10, h % 10, m // 10, m % 10, sec // 10, sec % 10], axis=1) + ord("0")
    colon = np.full((DAY_S, 1), ord(":"))
    chars = np.hstack(
        [np.full((DAY_S, 1), ord("T")), digits[:, :2], colon, digits[:, 2:4], colon, digits[:, 4:]]
    )
    return _fixed_strings(chars.astype(np.uint8))


def offset_text(offset_s: int) -> str:
    sign = "+" if offset_s >= 0 else "-"
    minutes = abs(int(offset_s)) // 60
    return f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"


def timestamps(t_utc: np.ndarray, offset_s: np.ndarray | None = None) -> pa.Array:
    """ISO 8601 text: with the given UTC offsets ('2026-03-01T14:05:09+01:00'), or UTC with 'Z' when None.

    Negative t_utc gives null.
    """
    t_utc = np.asarray(t_utc, dtype=np.int64)
    valid = t_utc >= 0
    if not valid.all():
        t_utc = np.where(valid, t_utc, t_utc[valid][0] if valid.any() else 0)
    local = t_utc if offset_s is None else t_utc + np.asarray(offset_s, dtype=np.int64)
    day = local // DAY_S
    d0 = int(day.min()) if day.size else 0
    span = int(day.max()) - d0 + 1 if day.size else 1
    dates = pa.array(np.datetime_as_string(np.arange(d0, d0 + span).astype("datetime64[D]"), unit="D"))
    date_text = pc.take(dates, pa.array(day - d0))
    clock = pc.take(_clock_strings(), pa.array(local - day * DAY_S))
    if offset_s is None:
        out = pc.binary_join_element_wise(date_text, clock, "Z", "")
    else:
        values, inverse = np.unique(np.asarray(offset_s), return_inverse=True)
        texts = pa.array([offset_text(v) for v in values.tolist()])
        out = pc.binary_join_element_wise(date_text, clock, pc.take(texts, pa.array(inverse.ravel())), "")
    if not valid.all():
        out = pc.if_else(pa.array(valid), out, pa.nulls(t_utc.size, pa.string()))
    return out


def money(cents: np.ndarray) -> pa.Array:
    """'12.50' / '-3.05' from integer cents."""
    cents = np.asarray(cents, dtype=np.int64)
    absolute = np.abs(cents)
    whole = pa.array(absolute // 100).cast(pa.string())
    frac = pc.utf8_lpad(pa.array(absolute % 100).cast(pa.string()), 2, "0")
    sign = pc.if_else(pa.array(cents < 0), "-", "")
    return pc.binary_join_element_wise(sign, whole, ".", frac, "")
