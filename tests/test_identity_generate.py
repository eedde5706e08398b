"""Generator identity cases (duplicate accounts, guest orders) with truth, and the pairwise scoring of the graph."""

from __future__ import annotations

import csv
import io

import duckdb
import pyarrow.parquet as pq
import pytest

from c360dev.bench.identity import score
from c360dev.generate import DirtConfig, generate
from c360dev.generate.identity import TRUTH_FILE, add_identity_cases


def _files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _shop(root, truth):
    generate(out=str(root), customers=200, days=20, seed=7, truth_dir=truth, dirt=DirtConfig.none(), workers=1)


def test_identity_cases_only_add_files_and_write_their_truth(tmp_path):
    plain, with_cases = tmp_path / "plain", tmp_path / "cases"
    _shop(plain, tmp_path / "truth_plain")
    _shop(with_cases, tmp_path / "truth_cases")
    before = _files(with_cases)
    cases = add_identity_cases(str(with_cases), tmp_path / "truth_cases", seed=7, start="2025-10-01", days=20,
                               duplicate_rate=0.05, guest_rate=0.05)
    after = _files(with_cases)
    # the shop's own files are untouched (same bytes as without the option); only identity-cases files are new
    assert _files(plain) == before
    assert {k: v for k, v in after.items() if k in before} == before
    added = sorted(set(after) - set(before))
    assert added and all("/identity-cases-" in k for k in added)

    emails = {}
    for key, data in before.items():
        if key.startswith("customers/") and key.endswith(".parquet"):
            for row in pq.read_table(io.BytesIO(data)).to_pylist():
                emails[row["customer_id"]] = row["email"]
    truth = list(csv.DictReader((tmp_path / "truth_cases" / TRUTH_FILE).open()))
    assert len(truth) == cases.duplicate_accounts + cases.guest_orders
    assert cases.duplicate_accounts == round(0.05 * len(emails)) and cases.guest_orders == cases.duplicate_accounts
    landed = {}
    for key in added:
        if key.startswith("customers/"):
            landed.update({r["customer_id"]: r for r in csv.DictReader(io.StringIO(after[key].decode()))})
    for t in truth:
        row = landed[t["customer_id"]]
        original = emails[t["person_customer_id"]]
        # same address modulo case and blanks, but not byte-equal (the graph must normalise)
        assert row["email"].strip().lower() == original.strip().lower() and row["email"] != original
        assert (row["signup_at"] == "") == (t["kind"] == "guest")


def test_pairwise_precision_and_recall(tmp_path):
    truth = tmp_path / TRUTH_FILE
    truth.write_text("customer_id,person_customer_id,kind\nD1,C1,duplicate_account\nG1,C1,guest\nD2,C2,duplicate_account\n")
    con = duckdb.connect()
    con.execute("create schema marts")
    # predicted: {C1, D1} (G1 missed), {C2, D2, C3} (C3 wrongly merged), {C4}
    con.execute("""create table marts.person_members as select * from (values
        ('p1', 'C1'), ('p1', 'D1'), ('p9', 'G1'), ('p2', 'C2'), ('p2', 'D2'), ('p2', 'C3'), ('p4', 'C4'))
        as t(person_id, customer_id)""")
    s = score(con, truth)
    # truth pairs: C1-D1, C1-G1, D1-G1, C2-D2 = 4; predicted: C1-D1, C2-D2, C2-C3, D2-C3 = 4; both: C1-D1, C2-D2
    assert (s.truth_pairs, s.predicted_pairs, s.true_pairs) == (4, 4, 2)
    assert s.precision == pytest.approx(0.5) and s.recall == pytest.approx(0.5)
    with pytest.raises(FileNotFoundError, match="--duplicate-accounts"):
        score(con, tmp_path / "missing.csv")
