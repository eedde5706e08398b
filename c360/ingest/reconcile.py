"""Prove that nothing was lost: per file, landed = loaded + quarantined, and the tables hold what the audit says."""

from __future__ import annotations

from datetime import date

from c360.config import Settings
from c360.ingest.contract import ENTITIES
from c360.pipeline.warehouse import connect


class ReconciliationError(RuntimeError):
    pass


def reconcile(settings: Settings, run_date: date | None = None) -> dict:
    """Check the audit (for files loaded by run_date's run, or all files) against raw tables and quarantine."""
    con = connect(settings, read_only=True)
    try:
        where = "WHERE a._run_date = $1" if run_date else ""
        params = [run_date] if run_date else []
        union = " UNION ALL ".join(
            f"SELECT _source_file AS f, count(*) AS n FROM raw.{e.table} GROUP BY 1" for e in ENTITIES.values()
        )
        rows = con.execute(
            f"""
            WITH loaded AS ({union}),
                 quarantined AS (SELECT source_file AS f, count(*) AS n FROM raw.quarantine GROUP BY 1)
            SELECT a.entity, a.source_file, a.landed_rows, a.loaded_rows, a.quarantined_rows,
                   coalesce(l.n, 0) AS in_raw, coalesce(q.n, 0) AS in_quarantine
            FROM raw.ingest_audit a
            LEFT JOIN loaded l ON l.f = a.source_file
            LEFT JOIN quarantined q ON q.f = a.source_file
            {where}
            """,
            params,
        ).fetchall()
    finally:
        con.close()
    bad = [
        r for r in rows
        if r[2] != r[3] + r[4] or r[3] != r[5] or r[4] != r[6]
    ]
    if bad:
        lines = "\n".join(
            f"  {r[0]} {r[1]}: landed {r[2]}, audit says loaded {r[3]} + quarantined {r[4]}, "
            f"tables hold {r[5]} + {r[6]}" for r in bad[:20]
        )
        raise ReconciliationError(
            f"{len(bad)} file(s) do not reconcile (landed = loaded + quarantined):\n{lines}\n"
            "Reload them with `c360 ingest --date <their dt>`; if it persists, it is a bug in ingestion."
        )
    return {
        "files": len(rows),
        "landed": sum(r[2] for r in rows),
        "loaded": sum(r[3] for r in rows),
        "quarantined": sum(r[4] for r in rows),
    }
