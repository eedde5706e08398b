"""Pairwise precision and recall of the identity graph against the generator's truth (issue #18 Deliver 4).

A pair is two customer ids in one person. Truth: identity_truth.csv (c360dev.generate.identity) maps each added id to
its person's original customer id; every other id is a person of its own. Predicted: marts.person_members.
precision = true merged pairs / predicted pairs, recall = true merged pairs / truth pairs (1.0 when there are none).

    python -m c360dev.bench.identity --truth data/ground_truth/identity_truth.csv [--warehouse path.duckdb]
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import duckdb


@dataclass(frozen=True)
class PairScores:
    customer_ids: int
    persons: int
    predicted_pairs: int
    truth_pairs: int
    true_pairs: int
    precision: float
    recall: float


def score(con: duckdb.DuckDBPyConnection, truth_csv: str | Path) -> PairScores:
    if not Path(truth_csv).exists():
        raise FileNotFoundError(f"{truth_csv}: no identity truth; generate with --duplicate-accounts/--guest-orders")
    row = con.execute(
        """
        with truth as (
            select customer_id, person_customer_id from read_csv(?, header = true, all_varchar = true)
        ),
        labelled as (
            select m.customer_id, m.person_id, coalesce(t.person_customer_id, m.customer_id) as true_person
            from marts.person_members as m left join truth as t using (customer_id)
        ),
        predicted as (select count(*) as n from labelled group by person_id),
        actual as (select count(*) as n from labelled group by true_person),
        both_ as (select count(*) as n from labelled group by person_id, true_person)
        select
            (select count(*) from labelled),
            (select count(*) from predicted),
            (select coalesce(sum(n * (n - 1) / 2), 0) from predicted),
            (select coalesce(sum(n * (n - 1) / 2), 0) from actual),
            (select coalesce(sum(n * (n - 1) / 2), 0) from both_)
        """,
        [str(truth_csv)],
    ).fetchone()
    n, persons, predicted, truth, true = (int(v) for v in row)
    return PairScores(n, persons, predicted, truth, true,
                      precision=true / predicted if predicted else 1.0, recall=true / truth if truth else 1.0)


def main(argv: list[str] | None = None) -> int:
    from c360.config import get_settings

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--truth", default=None, help="identity_truth.csv (default $C360_DATA_DIR/ground_truth/)")
    parser.add_argument("--warehouse", default=None, help="DuckDB file (default WAREHOUSE_PATH)")
    args = parser.parse_args(argv)
    settings = get_settings()
    truth = args.truth or settings.data_dir / "ground_truth" / "identity_truth.csv"
    con = duckdb.connect(str(args.warehouse or settings.warehouse_path), read_only=True)
    try:
        print(json.dumps(asdict(score(con, truth)), indent=2))
    finally:
        con.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
