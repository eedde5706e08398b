"""c360dev.compare_runs, the check behind 'a refactor must not change the nightly's outputs': it must see a changed
value, ignore what differs between any two runs (load timestamps, export run ids, Spark part-file names) and say
which columns differ."""

from __future__ import annotations

import duckdb

from c360dev.compare_runs import compare_dirs, main


def _night(root, value: float, loaded_at: str, run_id: str):
    (root / "warehouse").mkdir(parents=True)
    con = duckdb.connect(str(root / "warehouse" / "c360.duckdb"))
    con.execute("create schema marts")
    con.execute(f"create table marts.customer_scores as select * from (values (1, {value}, timestamp '{loaded_at}'), "
                f"(2, 0.5, timestamp '{loaded_at}')) t(customer_id, churn_probability, loaded_at)")
    con.execute("create schema raw")
    con.execute("create table raw.transactions as select 1 as order_id")
    con.close()
    run = root / "exports" / "dt=2026-11-04" / f"run={run_id}"
    run.mkdir(parents=True)
    (run / "vip.csv").write_text("customer_id,email\n1,a@example.com\n")


def test_identical_nights_compare_equal_and_a_changed_value_is_named(tmp_path, capsys):
    _night(tmp_path / "a", 0.25, "2026-12-06 10:00:00", "x1")
    _night(tmp_path / "b", 0.25, "2026-12-06 11:30:00", "y2")  # another run: other timestamps and export run id
    _night(tmp_path / "c", 0.75, "2026-12-06 10:00:00", "x1")
    same = compare_dirs(tmp_path / "a", tmp_path / "b")
    assert same["tables"]["marts.customer_scores"]["only_before"] == 0
    assert same["tables"]["marts.customer_scores"]["ignored"] == ["loaded_at"]
    assert same["files"]["exports/dt=2026-11-04/run=*/vip.csv"]["only_after"] == 0
    assert main([str(tmp_path / "a"), str(tmp_path / "b")]) == 0
    changed = compare_dirs(tmp_path / "a", tmp_path / "c")["tables"]["marts.customer_scores"]
    assert (changed["only_before"], changed["only_after"], changed["differing_columns"]) == (1, 1, ["churn_probability"])
    assert main([str(tmp_path / "a"), str(tmp_path / "c")]) == 1
    assert "DIFF marts.customer_scores" in capsys.readouterr().out
