"""Identity cases with known truth (issue #18 Deliver 4): duplicate accounts and guest orders of existing customers.

A pass after `generate()` that only ADDS files, so a shop generated without it is byte-identical to before:
- a duplicate account: the same person opens a second account (a new customer_id) with the same email typed
  differently (case, surrounding blanks), some days after the first, and buys once with it;
- a guest order: the person checks out without logging in; the shop lands a customers row for the guest id with the
  email and no signup_at (the landing contract has no email on transactions: a guest is a customer without an
  account) and the order under the guest id.
The truth, `identity_truth.csv` in the ground-truth folder, maps every added customer id to the original customer id
of its person; ids not listed are persons of their own. `c360dev.bench.identity` scores the graph against it.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from c360.storage import Storage, open_storage
from c360dev.generate.model import rng_for

TRUTH_FILE = "identity_truth.csv"
CUSTOMER_COLUMNS = ["customer_id", "email", "first_name", "last_name", "signup_at", "country", "updated_at"]
ORDER_COLUMNS = ["order_id", "customer_id", "ordered_at", "amount", "currency", "channel"]


@dataclass(frozen=True)
class IdentityCases:
    duplicate_accounts: int
    guest_orders: int
    truth_path: str


def _mangle(email: str, rng: np.random.Generator) -> str:
    """The same address as a person retypes it: another capitalisation and stray blanks; never another address."""
    style = rng.integers(0, 3)
    text = email.upper() if style == 0 else email.capitalize() if style == 1 else email.title()
    return " " * int(rng.integers(0, 2)) + text + " " * int(rng.integers(1, 3))


def _latest_customers(storage: Storage) -> dict[str, dict]:
    latest: dict[str, dict] = {}
    for key in sorted(f.key for f in storage.list("customers/")):
        if not key.endswith(".parquet"):
            continue
        for row in pq.read_table(io.BytesIO(storage.read_bytes(key))).to_pylist():
            if row.get("email"):
                latest[row["customer_id"]] = row
    return latest


def _iso(ts) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def add_identity_cases(
    out: Storage | str,
    truth_dir: str | Path,
    *,
    seed: int,
    start: str,
    days: int,
    duplicate_rate: float = 0.0,
    guest_rate: float = 0.0,
) -> IdentityCases:
    """Add duplicate accounts (share `duplicate_rate` of customers with an email) and guest orders (`guest_rate`)."""
    if not (0 <= duplicate_rate <= 1 and 0 <= guest_rate <= 1):
        raise ValueError(f"duplicate_rate ({duplicate_rate}) and guest_rate ({guest_rate}) must be between 0 and 1")
    storage = out if isinstance(out, Storage) else open_storage(str(out))
    customers = _latest_customers(storage)
    ids = sorted(customers)
    rng = rng_for(seed, "identity-cases")  # its own stream: the shop's other draws are untouched
    first_day = datetime.fromisoformat(start).replace(tzinfo=UTC)
    last_day = first_day + timedelta(days=days - 1)
    n_dup = int(round(duplicate_rate * len(ids)))
    n_guest = int(round(guest_rate * len(ids)))
    dup_of = rng.choice(len(ids), size=n_dup, replace=False) if n_dup else np.array([], dtype=int)
    guest_of = rng.choice(len(ids), size=n_guest, replace=False) if n_guest else np.array([], dtype=int)

    by_day: dict[str, tuple[list, list]] = {}
    truth: list[tuple[str, str, str]] = []
    for kind, picks in (("duplicate_account", dup_of), ("guest", guest_of)):
        for k, i in enumerate(picks):
            original = customers[ids[int(i)]]
            new_id = f"{'D' if kind == 'duplicate_account' else 'G'}{k + 1:07d}"
            known = original.get("signup_at") or original.get("updated_at")
            base = max(known.replace(tzinfo=UTC) if known.tzinfo is None else known, first_day)
            at = min(base + timedelta(days=int(rng.integers(1, 60)), seconds=int(rng.integers(0, 86_400))),
                     last_day + timedelta(seconds=int(rng.integers(0, 86_400))))
            row = {
                "customer_id": new_id,
                "email": _mangle(original["email"], rng),
                "first_name": original.get("first_name") or "",
                "last_name": original.get("last_name") or "",
                # a guest has no account: no signup
                "signup_at": _iso(at) if kind == "duplicate_account" else "",
                "country": original.get("country") or "",
                "updated_at": _iso(at),
            }
            order = {
                "order_id": f"O9{kind[0].upper()}{k + 1:09d}",
                "customer_id": new_id,
                "ordered_at": _iso(at + timedelta(minutes=5)),
                "amount": f"{float(rng.uniform(10, 150)):.2f}",
                "currency": "EUR",
                "channel": "web",
            }
            day = at.date().isoformat()
            cust_rows, order_rows = by_day.setdefault(day, ([], []))
            cust_rows.append(row)
            order_rows.append(order)
            truth.append((new_id, original["customer_id"], kind))

    for day, (cust_rows, order_rows) in sorted(by_day.items()):
        storage.write_bytes(f"customers/dt={day}/identity-cases-{day}.csv", _csv(CUSTOMER_COLUMNS, cust_rows))
        storage.write_bytes(f"transactions/dt={day}/identity-cases-{day}.csv", _csv(ORDER_COLUMNS, order_rows))
    truth_path = Path(truth_dir) / TRUTH_FILE
    truth_path.parent.mkdir(parents=True, exist_ok=True)
    with truth_path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["customer_id", "person_customer_id", "kind"])
        writer.writerows(sorted(truth))
    return IdentityCases(int(n_dup), int(n_guest), str(truth_path))


def _csv(columns: list[str], rows: list[dict]) -> bytes:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue().encode()
