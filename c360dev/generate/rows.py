"""Landing rows of each entity as numeric column tables (dict of numpy arrays), before dirt and formatting.

Every table has `arrival` (day index of its dt partition, 0 = the start date). Transactions also carry `kind`
(0 = clean, else a dirt code), `copy` and `eligible` (may serve as a template for dirt).
"""

from __future__ import annotations

import numpy as np

from c360dev.generate.calendar import DAY_S
from c360dev.generate.dirt import concat_rows, take_rows
from c360dev.generate.model import Catalog, Customers, Orders
from c360dev.generate.reference import CURRENCY_CODES, FX_PER_EUR


def _day_index(t: np.ndarray, start_s: int) -> np.ndarray:
    return ((np.asarray(t, dtype=np.int64) - start_s) // DAY_S).astype(np.int32)


def transaction_rows(
    o: Orders, c: Customers, start_s: int, order_base: int, minimal: bool
) -> dict[str, np.ndarray]:
    """One row per order line version: the sale, a later cancellation update, a return line.

    With `minimal`, one row per order that was not cancelled (amount = total of its lines in EUR), for the
    four-column transactions contract.
    """
    lo = o.line_order
    gross = o.quantity.astype(np.int64) * o.unit_cents
    amount = gross - o.discount_cents
    if minimal:
        # Without a currency column every amount is read in the base currency (EUR): convert the order total
        # back from the customer's currency, or a Swedish order would land ten times too large.
        fx = np.array([FX_PER_EUR.get(code, 1.0) for code in CURRENCY_CODES])
        total_local = np.bincount(lo, weights=amount, minlength=o.n)
        total = np.round(total_local / fx[c.currency[o.customer]]).astype(np.int64)
        idx = np.nonzero(o.cancelled_at < 0)[0]
        n = idx.size
        cust = o.customer[idx]
        return {
            "order_index": idx.astype(np.int64),
            "order_no": order_base + 10 * (idx.astype(np.int64) + 1),
            "line_id": np.ones(n, np.int16),
            "cust": cust,
            "ordered_at": o.ordered_at[idx],
            "product": np.full(n, -1, np.int32),
            "quantity": np.ones(n, np.int32),
            "unit_cents": total[idx],
            "discount_cents": np.zeros(n, np.int64),
            "amount": total[idx],
            "currency": np.full(n, CURRENCY_CODES.index("EUR"), np.int8),
            "status": np.zeros(n, np.int8),
            "channel": o.channel[idx],
            "line_type": np.zeros(n, np.int8),
            "returned_at": np.full(n, -1, np.int64),
            "is_test": np.zeros(n, bool),
            "updated_at": o.ordered_at[idx],
            "arrival": _day_index(o.ordered_at[idx], start_s),
            "kind": np.zeros(n, np.int8),
            "copy": np.zeros(n, bool),
            "eligible": np.ones(n, bool),
        }
    n = lo.size
    cust = o.customer[lo]
    ordered_at = o.ordered_at[lo]
    cancelled_at = o.cancelled_at[lo]
    # An order cancelled on the day it was placed lands once, already cancelled; otherwise the cancellation is a
    # new version of each line in the partition of the cancellation.
    same_day = (cancelled_at >= 0) & (cancelled_at // DAY_S == ordered_at // DAY_S)
    updated_at = np.where(same_day, cancelled_at, ordered_at)
    sale = {
        "order_index": lo.astype(np.int64),
        "order_no": order_base + 10 * (lo.astype(np.int64) + 1),
        "line_id": o.line_no,
        "cust": cust,
        "ordered_at": ordered_at,
        "product": o.product,
        "quantity": o.quantity.astype(np.int32),
        "unit_cents": o.unit_cents,
        "discount_cents": o.discount_cents,
        "amount": amount,
        "currency": c.currency[cust],
        "status": same_day.astype(np.int8),
        "channel": o.channel[lo],
        "line_type": np.zeros(n, np.int8),
        "returned_at": np.full(n, -1, np.int64),
        "is_test": np.zeros(n, bool),
        "updated_at": updated_at,
        "arrival": _day_index(updated_at, start_s),
        "kind": np.zeros(n, np.int8),
        "copy": np.zeros(n, bool),
        "eligible": (cancelled_at < 0) & (o.returned_at < 0),
    }
    later = np.nonzero((cancelled_at >= 0) & ~same_day)[0]
    upd = take_rows(sale, later)
    upd["status"][:] = 1
    upd["updated_at"] = cancelled_at[later]
    upd["arrival"] = _day_index(upd["updated_at"], start_s)
    upd["eligible"][:] = False

    ret = np.nonzero(o.returned_at >= 0)[0]
    r = take_rows(sale, ret)
    rq = o.return_quantity[ret].astype(np.int64)
    q = o.quantity[ret].astype(np.int64)
    # The refund is the returned share of what was paid; discount keeps the returned share of the discount.
    r["discount_cents"] = np.round(o.discount_cents[ret] * rq / q).astype(np.int64)
    r["quantity"] = -rq.astype(np.int32)
    r["amount"] = -(rq * o.unit_cents[ret] - r["discount_cents"])
    r["line_type"][:] = 1
    r["returned_at"] = o.returned_at[ret]
    r["updated_at"] = o.returned_at[ret]
    r["arrival"] = _day_index(r["updated_at"], start_s)
    r["eligible"][:] = False
    return concat_rows([sale, upd, r])


def customer_rows(c: Customers, start_s: int) -> dict[str, np.ndarray]:
    """Versions of each customer: at signup (the base all in the first partition), on consent and email changes."""
    n = c.n
    idx = np.arange(n, dtype=np.int64)
    cc, ec = c.consent_change, c.email_change
    initial = {
        "cust": idx,
        "updated_at": c.signup,
        "consent": c.consent0,
        "consent_updated_at": c.signup,
        "email_v": np.zeros(n, np.int8),
        "arrival": np.maximum(_day_index(c.signup, start_s), 0),
    }
    ci = np.nonzero(cc >= 0)[0]
    consent_rows = {
        "cust": ci,
        "updated_at": cc[ci],
        "consent": ~c.consent0[ci],
        "consent_updated_at": cc[ci],
        "email_v": ((ec[ci] >= 0) & (ec[ci] < cc[ci])).astype(np.int8),
        "arrival": _day_index(cc[ci], start_s),
    }
    ei = np.nonzero(ec >= 0)[0]
    flipped = (cc[ei] >= 0) & (cc[ei] < ec[ei])
    email_rows = {
        "cust": ei,
        "updated_at": ec[ei],
        "consent": c.consent0[ei] ^ flipped,
        "consent_updated_at": np.where(flipped, cc[ei], c.signup[ei]),
        "email_v": np.ones(ei.size, np.int8),
        "arrival": _day_index(ec[ei], start_s),
    }
    return concat_rows([initial, consent_rows, email_rows])


def product_rows(cat: Catalog, start_s: int) -> dict[str, np.ndarray]:
    """The full catalogue in the first partition, then one row per price change in the partition of its day."""
    n = cat.n
    day, prod = cat.changes
    return {
        "product": np.concatenate([np.arange(n), prod]).astype(np.int64),
        "price": np.concatenate([cat.price[0], cat.price[day, prod]]),
        "updated_at": np.concatenate([cat.created, start_s + day.astype(np.int64) * DAY_S]),
        "arrival": np.concatenate([np.zeros(n, np.int32), day.astype(np.int32)]),
    }


def file_order(arrival: np.ndarray, days: int, *keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row order for writing: by arrival day, then by `keys` (last key most significant, like np.lexsort).

    Returns (order, day_starts) with the rows of day d at order[day_starts[d]:day_starts[d + 1]].
    """
    order = np.lexsort((*keys, arrival))
    starts = np.searchsorted(arrival[order], np.arange(days + 1))
    return order, starts
