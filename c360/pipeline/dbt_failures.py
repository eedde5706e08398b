"""What a failed dbt data test caught: its name, the model and column it tests, a few offending rows, what to do.

dbt itself reports only "Got 3 results, configured to fail if != 0". After a build whose data tests failed,
c360.pipeline.transform calls explain_failed_tests(): for each failed test it reruns the test's compiled SQL
(from the run result) against the warehouse, read-only, with a LIMIT, and - for a generic test on a model - joins
the values it returns back to the model so the rows shown are whole model rows (a failed not_null otherwise shows
only the null). When the rows carry a source file, or an order / event id that raw.* knows, the landed files they
came from are named: fixing or replacing such a file and rerunning the date is the usual cure (docs/runbooks.md,
"A night failed"); a replaced or deleted file's rows leave every downstream model on the next build.

Nothing here may hide the failure itself: any error while looking the rows up becomes a sentence in the hint.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

ROWS_SHOWN = 5
# written beside dbt's run_results.json; the run report (c360/pipeline/report/collect.py dbt_section) reads it
FAILED_TESTS_FILE = "failed_tests.json"
RUNBOOK = "docs/runbooks.md#a-night-failed"
# a key column of the offending rows -> the raw table whose rows name the landed file (in this order)
# (a line key names one line of an order: stg_shop__transactions.line_key)
LINE_KEY_SQL = "order_id || '|' || coalesce(line_id, 1)::VARCHAR || '|' || lower(coalesce(line_type, 'sale'))"
RAW_BY_KEY = {
    "line_key": ("raw.transactions", LINE_KEY_SQL),
    "order_id": ("raw.transactions", "order_id"),
    "event_id": ("raw.tracking_events", "event_id"),
}
SOURCE_FILE_COLUMNS = ("source_file", "_source_file")
MAX_VALUE_CHARS = 80


@dataclass
class FailedTest:
    unique_id: str
    name: str
    model: str | None  # the tested relation, e.g. intermediate.int_order_lines
    column: str | None
    failures: int | None  # dbt's count of failing results
    columns: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)  # up to ROWS_SHOWN offending rows, values as text
    files: list[str] = field(default_factory=list)  # the landed files the rows came from, when known
    hint: str = ""

    def lines(self) -> list[str]:
        where = self.model or "a singular test"
        if self.column:
            where += f", column {self.column}"
        count = f"{self.failures:,} failing result(s)" if isinstance(self.failures, int) else "failed"
        out = [f"  test {self.name} on {where}: {count}"]
        if self.rows:
            out.append(f"    first {len(self.rows)} offending row(s) ({', '.join(self.columns)}):")
            out += [f"      {', '.join(row)}" for row in self.rows]
        out.append(f"    what to do: {self.hint}")
        return out


def _text(value) -> str:
    s = "null" if value is None else str(value)
    return s if len(s) <= MAX_VALUE_CHARS else s[: MAX_VALUE_CHARS - 3] + "..."


def _relation(con, name: str) -> str | None:
    """schema.table of a model or source table named `name` (model names are unique in a dbt project)."""
    found = con.execute(
        "SELECT table_schema FROM information_schema.tables WHERE table_name = ? ORDER BY table_schema",
        [name],
    ).fetchall()
    return f"{found[0][0]}.{name}" if len(found) == 1 else None


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _tested(node) -> tuple[str | None, list[str]]:
    """The tested model's name and the columns whose values the test's SQL returns first (empty: none known)."""
    meta = getattr(node, "test_metadata", None)
    refs = getattr(node, "refs", None) or []
    sources = getattr(node, "sources", None) or []
    attached = getattr(node, "attached_node", None)  # model.c360.<name> for a generic test on a model
    model = None
    if attached:
        model = str(attached).rsplit(".", 1)[-1]
    elif sources:  # a test on a source table
        model = sources[0][-1]
    elif len(refs) == 1:  # a singular test on one model
        model = getattr(refs[0], "name", None) or (refs[0][0] if isinstance(refs[0], list | tuple) else None)
    if meta is None or model is None:
        return model, []
    column = getattr(node, "column_name", None)
    if column:
        return model, [column]
    kwargs = getattr(meta, "kwargs", None) or {}
    columns = kwargs.get("columns")
    if isinstance(columns, list) and all(isinstance(c, str) for c in columns):
        return model, list(columns)  # unique_combination: the combination comes first
    return model, []


def offending_rows(con, node, limit: int = ROWS_SHOWN) -> tuple[str | None, list[str], list[tuple]]:
    """(tested relation, column names, up to `limit` rows) for a failed test node, from the live warehouse."""
    compiled = (getattr(node, "compiled_code", None) or "").strip().rstrip(";")
    if not compiled:
        raise ValueError("dbt kept no compiled SQL for this test")
    model, keys = _tested(node)
    relation = _relation(con, model) if model else None
    if relation and keys:
        # the test returns the offending values of `keys` first: show the model rows holding them
        aliases = [f"_k{i}" for i in range(len(keys))]
        on = " AND ".join(
            f"m.{_quote(k)} IS NOT DISTINCT FROM f.{a}" for k, a in zip(keys, aliases, strict=True)
        )
        sql = (
            f"SELECT m.* FROM {relation} AS m SEMI JOIN (SELECT * FROM ({compiled})) AS f({', '.join(aliases)}) "
            f"ON {on} LIMIT {int(limit)}"
        )
    else:
        sql = f"SELECT * FROM ({compiled}) LIMIT {int(limit)}"
    cur = con.execute(sql)
    return relation, [d[0] for d in cur.description], cur.fetchall()


def _landed_files(con, columns: list[str], rows: list[tuple]) -> list[str]:
    for col in SOURCE_FILE_COLUMNS:
        if col in columns:
            i = columns.index(col)
            return sorted({r[i] for r in rows if r[i] is not None})
    for key, (raw, expr) in RAW_BY_KEY.items():
        if key in columns:
            values = sorted({str(r[columns.index(key)]) for r in rows if r[columns.index(key)] is not None})
            if not values:
                continue
            found = con.execute(
                f"SELECT DISTINCT _source_file FROM {raw} WHERE {expr} IN (SELECT unnest(?::VARCHAR[])) ORDER BY 1",
                [values],
            ).fetchall()
            return [f[0] for f in found]
    return []


def _hint(test: FailedTest, run_date) -> str:
    rerun = f"rerun the date (c360 nightly --date {run_date})" if run_date else "rerun the date"
    if test.files:
        shown = ", ".join(test.files[:5]) + (
            f" and {len(test.files) - 5} more" if len(test.files) > 5 else ""
        )
        return (
            f"the rows came from the landed file(s) {shown} (relative to the landing root): correct or remove "
            f"them there (replace the file, or delete it), then {rerun}; the replaced rows leave every model. "
            f"If the data is right, the model or the test is wrong: fix dbt_project/. See {RUNBOOK}."
        )
    return (
        f"fix the raw data these rows come from (re-land the file that carried it), or the model / test in "
        f"dbt_project/ if the data is right, then {rerun}. See {RUNBOOK}."
    )


def explain_failed_tests(settings, results, run_date=None) -> list[FailedTest]:
    """One FailedTest per failed data test of a dbt run (`results`: dbt's RunResult list)."""
    import duckdb

    def kind(r) -> str:
        rtype = getattr(getattr(r, "node", None), "resource_type", None)
        return str(getattr(rtype, "value", rtype))

    failed = [
        r
        for r in results
        if kind(r) == "test" and str(getattr(r.status, "value", r.status)) in ("fail", "error")
    ]
    if not failed:
        return []
    out: list[FailedTest] = []
    con, unavailable = None, ""
    try:
        con = duckdb.connect(str(settings.warehouse_path), read_only=True)
    except Exception as exc:  # noqa: BLE001 - the failure is the news; say why no rows are shown
        unavailable = f"(the offending rows could not be read: {type(exc).__name__}: {exc})"
    try:
        for r in failed:
            node = r.node
            model, keys = _tested(node)
            test = FailedTest(
                unique_id=node.unique_id,
                name=node.name,
                model=model,
                column=getattr(node, "column_name", None) or (", ".join(keys) or None),
                failures=getattr(r, "failures", None),
            )
            note = ""
            if con is None:
                note = unavailable
            else:
                try:
                    relation, test.columns, rows = offending_rows(con, node)
                    test.model = relation or model
                    test.rows = [[_text(v) for v in row] for row in rows]
                    test.files = _landed_files(con, test.columns, rows)
                except Exception as exc:  # noqa: BLE001
                    note = f"(the offending rows could not be read: {type(exc).__name__}: {str(exc).splitlines()[0]})"
            test.hint = _hint(test, run_date) + (f" {note}" if note else "")
            out.append(test)
    finally:
        if con is not None:
            con.close()
    return out


def dbt_target_dir(settings) -> Path:
    """Where dbt writes run_results.json: settings.dbt_target_path (DBT_TARGET_PATH, relative to the project) or the
    project's target/. run_dbt hands dbt the same value through settings.as_env()."""
    project = Path(settings.dbt_project_dir)
    return project / settings.dbt_target_path if settings.dbt_target_path else project / "target"


def write_failed_tests(target_dir: Path, invocation_id: str | None, tests: list[FailedTest]) -> Path | None:
    """Record the failed tests beside run_results.json (the run report shows them); remove a stale record."""
    path = Path(target_dir) / FAILED_TESTS_FILE
    try:
        if not tests:
            path.unlink(missing_ok=True)
            return None
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            json.dumps(
                {"invocation_id": invocation_id, "tests": [asdict(t) for t in tests]}, indent=1, default=str
            ),
            encoding="utf-8",
        )
        return path
    except OSError as exc:
        log.warning("could not write %s: %s", path, exc)
        return None


def read_failed_tests(target_dir: Path, invocation_id: str | None) -> dict[str, dict]:
    """unique_id -> the recorded failed test, only when recorded by the same dbt invocation as run_results.json."""
    path = Path(target_dir) / FAILED_TESTS_FILE
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not invocation_id or doc.get("invocation_id") != invocation_id:
        return {}
    return {t["unique_id"]: t for t in doc.get("tests", [])}
