"""How far the dbt models are from Spark SQL (issue #16): compile the project as the DuckDB target compiles it,
then give each model's SQL to Spark's own parser (no data, no dbt-spark) and list what it rejects, by model, with
the line it stopped at. A gauge for porting the models to dispatched macros, not a test of results.

    python -m c360dev.spark_sql_check [--run-date YYYY-MM-DD]

Prints "<parsed> of <models> models parse" and one line per rejected model; exit 0 either way.
"""

from __future__ import annotations

import argparse
import logging
import re
import tempfile
from dataclasses import dataclass
from datetime import date
from pathlib import Path

# "database"."schema"."table" (DuckDB's three-part names) -> `schema`.`table`, which Spark's parser reads
_THREE_PART = re.compile(r'"(\w+)"\."(\w+)"\."(\w+)"')


@dataclass(frozen=True)
class Rejected:
    model: str
    error: str  # Spark's error class, e.g. PARSE_SYNTAX_ERROR
    line: str  # the SQL line the parser stopped at (stripped), or "" when it names none


def spark_sql(duckdb_sql: str) -> str:
    """The compiled SQL with DuckDB's quoted three-part relation names as Spark names them."""
    return _THREE_PART.sub(r"`\2`.`\3`", duckdb_sql)


def check(parser, name: str, sql: str) -> Rejected | None:
    """None if Spark's parser accepts `sql`, else what it rejected and where."""
    try:
        parser.parsePlan(spark_sql(sql))
        return None
    except Exception as exc:  # noqa: BLE001 - py4j wraps Spark's ParseException; its text is the report
        text = str(exc)
        error = re.search(r"\[([A-Z_]+)\]", text)
        where = re.search(r"line (\d+), pos \d+", text) or re.search(r"\(line (\d+), position \d+\)", text)
        line = sql.splitlines()[int(where.group(1)) - 1].strip() if where else ""
        return Rejected(name, error.group(1) if error else text.splitlines()[0][:80], line[:120])


def compiled_models(run_date: date) -> dict[str, str]:
    """model path (under models/) -> compiled SQL, compiled against a throw-away DuckDB file."""
    from c360.config import get_settings, process_environment
    from c360.pipeline.transform import run_dbt

    with tempfile.TemporaryDirectory(prefix="c360-spark-check-") as tmp:
        target = Path(tmp) / "target"
        with process_environment({"WAREHOUSE_PATH": str(Path(tmp) / "compile.duckdb"),
                                  "DBT_TARGET_PATH": str(target)}):
            settings = get_settings()
            run_dbt(["compile", "--quiet", "--select", "resource_type:model"], run_date, settings)
        sources = settings.dbt_project_dir / "models"
        root = target / "compiled" / "c360" / "models"
        # models only: a model compiles to the path of its .sql file (data tests land in sub-folders)
        return {str(p.relative_to(root)): p.read_text() for p in sorted(root.rglob("*.sql"))
                if (sources / p.relative_to(root)).is_file()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m c360dev.spark_sql_check", description=__doc__.split("\n\n")[0])
    parser.add_argument("--run-date", type=date.fromisoformat, default=date(2026, 1, 1),
                        help="the run date the models are compiled for (default 2026-01-01)")
    args = parser.parse_args(argv)
    from pyspark.sql import SparkSession

    models = compiled_models(args.run_date)
    spark = (SparkSession.builder.master("local[1]").appName("c360-spark-sql-check")
             .config("spark.ui.enabled", "false").getOrCreate())
    spark.sparkContext.setLogLevel("OFF")
    # pyspark logs every rejected statement with its Java stack; the rejections are this tool's output
    logging.getLogger("SQLQueryContextLogger").disabled = True
    try:
        sql_parser = spark._jsparkSession.sessionState().sqlParser()
        rejected = [r for name, sql in models.items() if (r := check(sql_parser, name, sql)) is not None]
    finally:
        spark.stop()
    print(f"{len(models) - len(rejected)} of {len(models)} models parse in Spark SQL {spark.version}")
    for r in rejected:
        print(f"  {r.model}: {r.error}: {r.line}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
