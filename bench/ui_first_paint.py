"""Time the segments page's first paint on an M-sized warehouse while a writer holds the warehouse (docs/ui.md).

A full `make bench SIZE=M` nightly takes tens of minutes on this 2-core machine, so this builds the tables the page
reads directly in DuckDB at the size the nightly would leave them: N customers, the repository's segments.yml, a
number of nights of segment_members / segment_evaluations / segment_changes, scores, contacts, recommendations and
pii.segment_export_rows created from the dbt model's own SQL; then exports the last night with the real exporter.
While a separate process holds the warehouse open read-write and commits every second (as the nightly's single
writer does), it starts `c360 ui`, opens the page in headless chromium and reads the browser's first-contentful-paint
and the server's render time, cold (first request) and warm.

    python -m bench.ui_first_paint --customers 100000 --nights 14 --out /tmp/ui_bench [--screenshots docs]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import urllib.request
from datetime import date, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
REFS = {"segment_members": "marts.segment_members", "segment_changes": "marts.segment_changes",
        "customer_features": "feature_store.customer_features", "pii_customer_contacts": "pii.pii_customer_contacts",
        "customer_recommendations": "marts.customer_recommendations"}

WRITER = """
import sys, time, duckdb
con = duckdb.connect(sys.argv[1])  # read-write: the single writer, like the nightly's dbt
con.execute("CREATE TABLE IF NOT EXISTS raw.bench_writer (written_at TIMESTAMP)")
print("writing", flush=True)
while True:
    con.execute("INSERT INTO raw.bench_writer VALUES (now())")
    time.sleep(1.0)
"""


def build(warehouse: Path, customers: int, nights: int, last: date) -> list[str]:
    import duckdb
    import jinja2

    from c360.marketing.segments import load_segments

    names = [s.name for s in load_segments()]
    warehouse.parent.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(str(warehouse))
    first = last - timedelta(days=nights - 1)
    con.execute(f"""
        CREATE SCHEMA marts; CREATE SCHEMA pii; CREATE SCHEMA feature_store; CREATE SCHEMA raw;
        CREATE TABLE segnames AS SELECT * FROM (VALUES {', '.join(f"({i}, '{n}')" for i, n in enumerate(names))})
            t(k, segment);
        CREATE TABLE nights AS SELECT d::date AS as_of_date, row_number() OVER (ORDER BY d) - 1 AS n
            FROM range(DATE '{first}', DATE '{last}' + 1, INTERVAL 1 DAY) t(d);
        CREATE TABLE feature_store.customer_features AS
            SELECT 'C' || lpad(i::varchar, 7, '0') AS customer_id, nights.as_of_date,
                   hash(i, 'consent') % 10 < 6 AS marketing_consent, (hash(i) % 7)::integer AS orders_count
            FROM range({customers}) t(i) CROSS JOIN nights;
        CREATE TABLE marts.customer_scores AS
            SELECT customer_id, as_of_date, (hash(customer_id, 'c') % 1000) / 1000.0 AS churn_probability,
                   (hash(customer_id, 'c') % 10 + 1)::integer AS churn_decile, 0.5 AS p_alive,
                   1.0 AS expected_purchases, (hash(customer_id, 'v') % 500)::double AS predicted_value_eur,
                   (hash(customer_id, 'v') % 10 + 1)::integer AS value_decile,
                   -- the churn model's top reasons as spark_jobs.score writes them (docs/models.md, "Reason
                   -- codes"): the member preview shows them, so the timing and the screenshots include them
                   (['days_since_last_order high', 'sessions_30d low', 'orders_count low'])
                       [(hash(customer_id, 'r1') % 3 + 1)::bigint] AS churn_reason_1,
                   (['return_rate high', 'country = DE', NULL])
                       [(hash(customer_id, 'r2') % 3 + 1)::bigint] AS churn_reason_2,
                   (['avg_order_value_eur low', NULL, NULL])
                       [(hash(customer_id, 'r3') % 3 + 1)::bigint] AS churn_reason_3
            FROM feature_store.customer_features;
        -- membership: a stable score per (customer, segment) under a threshold that drifts night by night, so
        -- segments grow or shrink and customers enter and exit
        CREATE TABLE marts.segment_members AS
            SELECT f.as_of_date, s.segment, f.customer_id, sc.churn_probability, sc.churn_decile, sc.p_alive,
                   sc.predicted_value_eur, sc.value_decile, f.marketing_consent, 'run-' || f.as_of_date AS run_id,
                   '7' AS churn_model_version, '3' AS clv_model_version, '5' AS recommender_model_version,
                   f.as_of_date AS feature_snapshot_date
            FROM feature_store.customer_features f JOIN nights USING (as_of_date) CROSS JOIN segnames s
            JOIN marts.customer_scores sc USING (customer_id, as_of_date)
            WHERE hash(f.customer_id, s.k) % 1000 < 40 + 12 * s.k + (CASE WHEN s.k % 2 = 0 THEN 3 ELSE -2 END) * nights.n;
        CREATE TABLE marts.segment_evaluations AS
            SELECT nights.as_of_date, s.segment, true AS is_evaluated, count(m.customer_id)::integer AS members,
                   count(m.customer_id) FILTER (WHERE m.marketing_consent)::integer AS members_with_marketing_consent
            FROM nights CROSS JOIN segnames s LEFT JOIN marts.segment_members m
                ON m.as_of_date = nights.as_of_date AND m.segment = s.segment
            GROUP BY 1, 2;
        CREATE TABLE marts.segment_changes AS
            WITH pairs AS (SELECT as_of_date, lag(as_of_date) OVER (ORDER BY as_of_date) AS prev FROM nights)
            SELECT p.as_of_date, cur.segment, cur.customer_id, 'entered' AS change, p.prev AS previous_as_of_date
            FROM pairs p JOIN marts.segment_members cur ON cur.as_of_date = p.as_of_date
            WHERE p.prev IS NOT NULL AND NOT EXISTS (SELECT 1 FROM marts.segment_members old WHERE
                old.as_of_date = p.prev AND old.segment = cur.segment AND old.customer_id = cur.customer_id)
            UNION ALL
            SELECT p.as_of_date, old.segment, old.customer_id, 'exited', p.prev
            FROM pairs p JOIN marts.segment_members old ON old.as_of_date = p.prev
            WHERE NOT EXISTS (SELECT 1 FROM marts.segment_members cur WHERE
                cur.as_of_date = p.as_of_date AND cur.segment = old.segment AND cur.customer_id = old.customer_id);
        CREATE TABLE pii.pii_customer_contacts AS
            SELECT 'C' || lpad(i::varchar, 7, '0') AS customer_id, 'c' || i || '@example.com' AS email,
                   'First' AS first_name, 'Last' AS last_name, true AS marketing_consent
            FROM range({customers}) t(i);
        CREATE TABLE marts.customer_recommendations AS
            SELECT as_of_date, customer_id, r AS rank, 'P' || (hash(customer_id, r) % 500) AS product_id,
                   1.0 / r AS score, '5' AS recommender_model_version
            FROM marts.customer_scores CROSS JOIN range(1, 4) t(r) WHERE as_of_date = DATE '{last}';
    """)
    model = (REPO / "dbt_project/models/pii/segment_export_rows.sql").read_text()
    sql = jinja2.Environment(undefined=jinja2.StrictUndefined).from_string(model).render(
        ref=REFS.__getitem__, config=lambda **_: "", reader_view=lambda: "view")
    con.execute("CREATE VIEW pii.segment_export_rows AS " + sql)
    con.execute("CHECKPOINT")
    con.close()
    return names


def small_png(path: Path) -> None:
    """Screenshots go into the repository: 64 colours are plenty for a page of text and a few lines."""
    from PIL import Image

    Image.open(path).convert("RGB").quantize(colors=64).save(path, optimize=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--customers", type=int, default=100_000)
    p.add_argument("--nights", type=int, default=14)
    p.add_argument("--out", type=Path, required=True, help="a new folder for the data and the result")
    p.add_argument("--screenshots", type=Path, help="also save the page and the rule editor as PNGs here")
    args = p.parse_args(argv)

    data = args.out.resolve() / "data"
    os.environ["C360_DATA_DIR"] = str(data)
    for var in ("WAREHOUSE_PATH", "EXPORT_URI", "C360_REPORTS_DIR"):
        os.environ.pop(var, None)
    from c360.config import get_settings
    from c360.marketing.exports import export_segments

    settings = get_settings()
    last = date(2026, 11, 20)
    t0 = time.monotonic()
    build(settings.warehouse_path, args.customers, args.nights, last)
    built = time.monotonic() - t0
    t0 = time.monotonic()
    manifest = export_segments(last, settings)
    exported = time.monotonic() - t0
    size_mb = settings.warehouse_path.stat().st_size / 1e6
    print(f"warehouse {size_mb:.0f} MB built in {built:.1f} s, exported in {exported:.1f} s", flush=True)

    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(settings.warehouse_path)], stdout=subprocess.PIPE,
                              text=True)
    assert writer.stdout.readline().strip() == "writing"
    import socket

    with socket.socket() as s:  # a free port on the loopback
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    t0 = time.monotonic()
    server = subprocess.Popen([sys.executable, "-m", "c360.cli", "ui", "--port", str(port)], cwd=REPO, env=env)
    url = f"http://127.0.0.1:{port}"
    result: dict = {"customers": args.customers, "nights": args.nights, "segments": len(manifest["segments"]),
                    "warehouse_mb": round(size_mb), "segment_member_rows": None,
                    "load_average_at_start": [round(x, 1) for x in os.getloadavg()]}
    try:
        while True:
            try:
                urllib.request.urlopen(url + "/api/segments", timeout=30).read()
                break
            except OSError:
                if server.poll() is not None:
                    raise SystemExit("c360 ui stopped") from None
                time.sleep(0.2)
        result["server_ready_seconds"] = round(time.monotonic() - t0, 2)
        timings = []
        for _ in range(5):
            t = time.monotonic()
            urllib.request.urlopen(url + "/", timeout=60).read()
            timings.append(round(time.monotonic() - t, 3))
        result["server_render_seconds"] = timings

        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        os.environ["SE_OFFLINE"] = "true"
        options = webdriver.ChromeOptions()
        options.binary_location = "/usr/bin/chromium"
        for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                  "--window-size=1280,900"):
            options.add_argument(a)
        driver = webdriver.Chrome(service=Service(executable_path="/usr/bin/chromedriver"), options=options)
        try:
            paints = []
            for _ in range(5):
                driver.get(url + "/")
                fcp = None
                for _ in range(50):  # the paint entry is recorded just after the paint: wait for it
                    fcp = driver.execute_script("const e = performance.getEntriesByName('first-contentful-paint')[0];"
                                                " return e ? e.startTime : null")
                    if fcp is not None:
                        break
                    time.sleep(0.1)
                paints.append(round(fcp / 1000, 3) if fcp is not None else None)
            result["browser_first_contentful_paint_seconds"] = paints
            if args.screenshots:
                args.screenshots.mkdir(parents=True, exist_ok=True)
                driver.save_screenshot(str(args.screenshots / "ui-segments.png"))
                small_png(args.screenshots / "ui-segments.png")
                driver.get(url + "/rules")
                for field, value in (("name", "loyal_high_value"), ("where", "orders_count >= 3 and value_decile >= 8"),
                                     ("description", "Frequent buyers in the top value deciles - loyalty offers.")):
                    driver.find_element("id", field).send_keys(value)
                driver.find_element("id", "preview").click()
                driver.save_screenshot(str(args.screenshots / "ui-rule-editor.png"))
                small_png(args.screenshots / "ui-rule-editor.png")
        finally:
            driver.quit()
        # the writer kept committing the whole time: the page never blocked it
        writes = subprocess.run([sys.executable, "-c", "print('ok')"], capture_output=True, text=True)
        result["writer_alive"] = writer.poll() is None and writes.returncode == 0
    finally:
        server.terminate()
        server.wait(timeout=20)
        writer.terminate()
        writer.wait(timeout=20)
    import duckdb

    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        result["segment_member_rows"] = con.execute("SELECT count(*) FROM marts.segment_members").fetchone()[0]
        result["writer_commits"] = con.execute("SELECT count(*) FROM raw.bench_writer").fetchone()[0]
    result["load_average_at_end"] = [round(x, 1) for x in os.getloadavg()]  # a shared machine: say how busy
    (args.out / "result.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
