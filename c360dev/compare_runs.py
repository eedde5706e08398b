"""Compare the outputs of two nightly runs (e.g. before and after a refactor, same seed and date): every warehouse
table, the scores and feature-store Parquet and the export files.

    python -m c360dev.compare_runs BEFORE_DATA_DIR AFTER_DATA_DIR [--json FILE]

Each data dir is a C360_DATA_DIR after `c360 nightly --date D` (data/ by default).

Row sets are compared order-free (EXCEPT ALL both ways) on the columns both sides have, leaving out columns that
legitimately differ between two runs (load/run timestamps, run and export ids, durations). Doubles are rounded to
9 significant digits. Prints one line per object and a JSON summary with --json FILE.
"""

import json
import re
import sys
from pathlib import Path

import duckdb

VOLATILE = re.compile(
    r"(^|_)(loaded|scored|built|created|updated|exported|published|started|ended|finished|computed|run|ingested|"
    r"written|generated|quarantined|checked)_at$|^file_version$|^_?(run_id|export_id|load_id|batch_id|invocation_id|mlflow_run_id|dbt_run_id|"
    r"seconds|duration_s|elapsed_s|_loaded_at|loaded_by|source_mtime|file_mtime)$|_run_id$|_seconds$"
)


def cols_of(con, rel):
    return [(r[0], r[1]) for r in con.execute(f"describe select * from {rel}").fetchall()]


def expr(name, typ):
    q = '"' + name.replace('"', '""') + '"'
    if typ in ("DOUBLE", "FLOAT", "REAL"):
        return f"round({q}::double, 9) as {q}"
    if typ.startswith("DECIMAL"):
        return f"{q}::double as {q}"
    return q


def compare_rel(con, b, a):
    cb, ca = dict(cols_of(con, b)), dict(cols_of(con, a))
    common = [c for c in cb if c in ca and not VOLATILE.search(c)]
    nb = con.execute(f"select count(*) from {b}").fetchone()[0]
    na = con.execute(f"select count(*) from {a}").fetchone()[0]
    out = {"rows_before": nb, "rows_after": na, "added": sorted(set(ca) - set(cb)),
           "removed": sorted(set(cb) - set(ca)), "ignored": sorted(c for c in cb if c in ca and VOLATILE.search(c))}
    if not common:
        out["differing_rows"] = None
        return out
    sel_b = ", ".join(expr(c, cb[c]) for c in common)
    sel_a = ", ".join(expr(c, cb[c]) for c in common)
    only_b = con.execute(f"select count(*) from (select {sel_b} from {b} except all select {sel_a} from {a})").fetchone()[0]
    only_a = con.execute(f"select count(*) from (select {sel_a} from {a} except all select {sel_b} from {b})").fetchone()[0]
    out["only_before"], out["only_after"] = only_b, only_a
    if only_b or only_a:
        diff_cols = []
        for c in common:
            e = expr(c, cb[c])
            x = con.execute(f"select count(*) from (select {e} from {b} except all select {e} from {a})").fetchone()[0]
            y = con.execute(f"select count(*) from (select {e} from {a} except all select {e} from {b})").fetchone()[0]
            if x or y:
                diff_cols.append(c)
        out["differing_columns"] = diff_cols
    return out


def compare_dirs(before: Path, after: Path) -> dict:
    """Per warehouse table and per output file: rows on each side, columns added/removed, and the rows (and columns)
    that differ on the columns both sides have."""
    con = duckdb.connect()
    con.execute(f"attach '{before / 'warehouse/c360.duckdb'}' as b (read_only)")
    con.execute(f"attach '{after / 'warehouse/c360.duckdb'}' as a (read_only)")
    q = ("select table_schema, table_name from information_schema.tables where table_catalog = ? "
         "and table_schema not in ('information_schema', 'pg_catalog', 'main')")
    tb = {f"{s}.{t}" for s, t in con.execute(q, ["b"]).fetchall()}
    ta = {f"{s}.{t}" for s, t in con.execute(q, ["a"]).fetchall()}
    result = {"tables_only_before": sorted(tb - ta), "tables_only_after": sorted(ta - tb), "tables": {}, "files": {}}
    for t in sorted(tb & ta):
        result["tables"][t] = compare_rel(con, "b." + t, "a." + t)
    for sub, pattern in (("scores", "**/*.parquet"), ("feature_store", "**/*.parquet"), ("exports", "**/*.csv")):
        nb, na = _files(before / sub, pattern), _files(after / sub, pattern)
        for k in sorted(set(nb) | set(na)):
            if k not in nb or k not in na:
                result["files"][f"{sub}/{k}"] = {"only": "before" if k in nb else "after"}
                continue
            reader = "read_parquet" if k.endswith(".parquet") else "read_csv_auto"
            result["files"][f"{sub}/{k}"] = compare_rel(con, f"{reader}('{nb[k]}', hive_partitioning=false)",
                                                        f"{reader}('{na[k]}', hive_partitioning=false)")
    con.close()
    return result


def _files(root: Path, pattern: str) -> dict[str, Path]:
    """Output files by their path under root, with the parts that differ between two runs of the same night (export
    run ids, Spark's part-file uuids) replaced by *."""
    if not root.exists():
        return {}
    return {re.sub(r"part-(\d+)-[0-9a-f-]+-c000", r"part-\1-*", re.sub(r"run=[^/]+", "run=*", str(p.relative_to(root)))): p
            for p in root.glob(pattern)}


def report(result: dict) -> tuple[int, int]:
    """Print one line per differing object (and a total); returns (identical, differing)."""
    same = diff = 0
    for kind in ("tables", "files"):
        for name, r in result[kind].items():
            if "only" in r:
                print(f"ONLY {r['only'].upper()} {name}")
                diff += 1
                continue
            ok = r["rows_before"] == r["rows_after"] and not r.get("only_before") and not r.get("only_after")
            same += ok
            diff += not ok
            extra = f" columns added {r['added']} removed {r['removed']}" if (r["added"] or r["removed"]) else ""
            if not ok:
                extra += (f" rows {r['rows_before']}->{r['rows_after']}, {r.get('only_before')} only before, "
                          f"{r.get('only_after')} only after, differing columns {r.get('differing_columns')}")
            if extra:
                print(f"{'SAME' if ok else 'DIFF'} {name}{extra}")
    print(f"tables only before: {result['tables_only_before']}")
    print(f"tables only after: {result['tables_only_after']}")
    print(f"identical on the common columns: {same}; differing: {diff}")
    return same, diff


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    jpath = None
    if "--json" in args:
        i = args.index("--json")
        jpath = args[i + 1]
        del args[i:i + 2]
    if len(args) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    result = compare_dirs(Path(args[0]), Path(args[1]))
    _, diff = report(result)
    if jpath:
        Path(jpath).write_text(json.dumps(result, indent=1, default=str))
    return 1 if diff else 0


if __name__ == "__main__":
    sys.exit(main())
