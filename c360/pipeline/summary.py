"""Short human-readable summaries printed at the end of a run."""

from __future__ import annotations


def print_ingest_summary(result: dict) -> None:
    print(f"\nIngestion for {result['run_date']} -> {result['warehouse']} ({result['seconds']:.1f} s)")
    print(f"  {'entity':<14}{'files':>7}{'landed':>13}{'loaded':>13}{'quarantined':>13}")
    for name, e in result["entities"].items():
        print(f"  {name:<14}{e['files']:>7,}{e['landed']:>13,}{e['loaded']:>13,}{e['quarantined']:>13,}")
        for reason, n in sorted(e["reasons"].items(), key=lambda kv: -kv[1]):
            print(f"  {'':<14}{'':>7}{'':>13}{'':>13}{n:>13,}  {reason}")


def print_nightly_summary(settings, day, outcomes: list, total_seconds: float) -> None:
    """What the night produced, read back from the warehouse (not from task return values); `outcomes` are the
    night's DAG runs (c360.pipeline.dagrun.DagRunOutcome), for their timings, logs and held exports."""
    from c360.pipeline.warehouse import connect

    print(f"\n=== c360 nightly for {day}: done in {total_seconds:.0f} s ===")
    for o in outcomes:
        print(f"  {o.dag_id:<22} {o.seconds:8.1f} s   {len(o.executed)} task(s)   log: {o.log_path}")
    for o in outcomes:  # skipped tasks say why; held exports are the one an operator must act on
        for t in o.tasks.values():
            if not t.note:
                continue
            if t.task_id == "export":
                print(f"\n  EXPORTS HELD for {day}: no segment file was written. Why: {t.note}\n"
                      f"  Review the report's drift section, then release them with "
                      f"`c360 segments export --date {day} --force`.")
            else:
                print(f"  Skipped: {o.dag_id}.{t.task_id}: {t.note}")
    if not settings.warehouse_path.exists():
        print(f"\n  No warehouse at {settings.warehouse_path} yet (no DAG of this night writes it).")
        _print_outputs(settings, day)
        return
    con = connect(settings, read_only=True)
    try:
        rows = con.execute(
            """SELECT entity, count(*) AS files, sum(landed_rows), sum(loaded_rows), sum(quarantined_rows)
               FROM raw.ingest_audit WHERE _run_date = $1 GROUP BY 1 ORDER BY 1""",
            [day],
        ).fetchall()
        totals = dict(con.execute(
            "SELECT 'transactions', count(*) FROM raw.transactions UNION ALL SELECT 'tracking', count(*) "
            "FROM raw.tracking_events UNION ALL SELECT 'customers', count(*) FROM raw.customers "
            "UNION ALL SELECT 'products', count(*) FROM raw.products"
        ).fetchall())
        reasons = con.execute(
            "SELECT entity, reason, count(*) FROM raw.quarantine WHERE _run_date = $1 GROUP BY 1, 2 ORDER BY 1, 3 DESC",
            [day],
        ).fetchall()
    finally:
        con.close()
    print(f"\n  Loaded by this run (files under dt={day} and any late or first-run files):")
    print(f"  {'entity':<14}{'files':>7}{'landed':>13}{'loaded':>13}{'quarantined':>13}{'rows in raw':>14}")
    for entity, files, landed, loaded, quar in rows:
        print(f"  {entity:<14}{files:>7,}{landed:>13,}{loaded:>13,}{quar:>13,}{totals.get(entity, 0):>14,}")
    if reasons:
        print("\n  Quarantined by reason (raw.quarantine):")
        for entity, reason, n in reasons:
            print(f"    {entity:<14}{reason:<22}{n:>10,}")
    _print_stage_notes(settings, day)
    print(f"\n  Warehouse: {settings.warehouse_path}")
    print(f"  Landing zone: {settings.landing_uri}")
    _print_outputs(settings, day)


def _print_stage_notes(settings, day) -> None:
    """One line per stage note of the night (e.g. "recommender not trained: no product interactions")."""
    from c360.pipeline.report.stages import read_stages

    notes = {}
    for rec in read_stages(settings, day):  # the latest attempt of a stage wins
        notes[rec["stage"]] = rec.get("note")
    for stage, note in notes.items():
        if note:
            print(f"\n  Note ({stage}): {note}")


def _print_outputs(settings, day) -> None:
    """Where the night's results are: scores, exports (with the manifest's segments) and the run report."""
    from c360.marketing.exports.export import date_prefix, read_manifest
    from c360.pipeline.report import report_paths
    from c360.storage import open_storage

    scores = settings.scores_dir / "scores" / f"dt={day}"
    if scores.exists():
        print(f"  Scores: {scores}")
    storage = open_storage(settings.export_uri, settings.s3_endpoint_url)
    manifest = read_manifest(storage, day)
    if manifest:
        print(f"  Exports: {storage.uri_of(date_prefix(day) + '/manifest.json')}")
        for name, seg in manifest["segments"].items():
            print(f"    {name:<34}{seg['rows']:>8,} rows  (+{seg['entered']:,} / -{seg['exited']:,})")
    html, _ = report_paths(settings, day)
    if html.exists():
        print(f"\n  Run report: {html}")
