"""The segments page in a real browser: Debian's chromium, headless, driven by Selenium through Debian's chromedriver.

A tiny shop is built by dbt for two nights (tests/dbt_testkit.py's base scenario, scores loaded as the nightly does)
and exported; `c360 ui` serves it from a subprocess on a free port of 127.0.0.1. The tests read the sizes on the
page against the warehouse, download a file and compare its sha256 with the manifest, and use the rule editor with a
valid rule (saved) and refused ones (segments.yml untouched).

No skip: without chromium or chromedriver these tests fail and say to run `make browser-deps` (.ci/run does).
Nothing is downloaded: the driver is /usr/bin/chromedriver, so Selenium Manager never runs (SE_OFFLINE set too).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import duckdb
import pytest

from c360.config import get_settings
from c360.marketing.exports import export_segments, read_manifest
from c360.marketing.segments import load_segments, segments_dbt_var
from c360.pipeline import transform
from c360.storage import open_storage
from tests import dbt_testkit as kit
from tests.conftest import free_port
from tests.test_dbt_segments import CHURN_DECILES, D1, D2, load_scores

pytestmark = [pytest.mark.integration, pytest.mark.browser]

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
REPO = Path(__file__).resolve().parents[1]

SEGMENTS_YML = """\
# test shop segments (the page must keep this comment when it saves)
version: 1
segments:
  - name: buyers
    description: Everyone who ordered - the whole base.
    where: orders_count >= 1
    required_consent: marketing
    destination: crm

  - name: high_churn
    description: The customers most likely to churn.
    where: churn_decile >= 8
    required_consent: marketing
    destination: crm

  - name: maybe_alive
    description: Still likely active - service list.
    where: coalesce(p_alive, 1) >= 0.5
    required_consent: none
    destination: analytics
"""


def warehouse_query(sql: str, params=None) -> list[tuple]:
    with duckdb.connect(str(get_settings().warehouse_path), read_only=True) as con:
        return con.execute(sql, params or []).fetchall()


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    """Two nights of the tiny shop built by dbt with scores, exported; yields (settings, segments file, env)."""
    root = tmp_path_factory.mktemp("ui_shop")
    with pytest.MonkeyPatch.context() as mp:
        kit.configure_env(mp, root)
        for var in ("EXPORT_URI", "C360_REPORTS_DIR", "C360_SCORES_DIR", "MLFLOW_TRACKING_URI", "LANDING_URI"):
            mp.delenv(var, raising=False)
        seg_file = root / "segments.yml"
        seg_file.write_text(SEGMENTS_YML)
        settings = get_settings()
        with kit.connect() as con:
            kit.seed_base(con)
        definitions = segments_dbt_var(seg_file)
        for day in (D1, D2):
            transform.run_dbt(kit.BUILD_MODELS, day, settings, segments=definitions)
            load_scores(day, CHURN_DECILES[day])
            transform.run_dbt(["build", "-s", transform.SCORES_SELECTOR], day, settings, segments=definitions)
            export_segments(day, settings, segments=load_segments(seg_file))
        yield settings, seg_file, dict(os.environ)


@pytest.fixture(scope="module")
def server(shop):
    """`c360 ui` in a subprocess on a free port; yields its base URL."""
    settings, seg_file, env = shop
    port = free_port()
    env = {**env, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "c360.cli", "ui", "--port", str(port), "--segments-file",
                             str(seg_file)], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        try:
            with urllib.request.urlopen(f"{url}/api/segments", timeout=5) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"c360 ui did not start on {url}: {proc.communicate()[0][-3000:]}")
        time.sleep(0.3)
    yield url
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not Path(p).exists()]
    if missing:
        pytest.fail(f"{', '.join(missing)} missing: run `make browser-deps` (installs Debian's chromium and "
                    "chromium-driver; .ci/run does it before the tests)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    downloads = tmp_path_factory.mktemp("downloads")
    os.environ["SE_OFFLINE"] = "true"  # belt and braces: Selenium Manager must never fetch a driver or browser
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1400,1000", "--no-first-run", "--disable-extensions"):
        options.add_argument(arg)
    options.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                              "download.prompt_for_download": False,
                                              "safebrowsing.enabled": False})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    driver.downloads = downloads
    yield driver
    driver.quit()


def test_page_shows_every_segment_with_tonights_size_from_the_warehouse(server, browser, shop, tmp_path_factory):
    from selenium.webdriver.common.by import By

    settings, seg_file, _ = shop
    browser.get(server + "/")
    assert browser.find_element(By.ID, "as-of-date").text == D2.isoformat()
    expected = dict(warehouse_query("SELECT segment, count(*) FROM marts.segment_members WHERE as_of_date = ? "
                                    "GROUP BY 1", [D2]))
    rows = {r.get_attribute("data-segment"): r for r in browser.find_elements(By.CSS_SELECTOR, "#segments tbody tr")}
    assert set(rows) == {s.name for s in load_segments(seg_file)}
    for name, row in rows.items():
        assert int(row.find_element(By.CLASS_NAME, "size").text.replace(",", "")) == expected.get(name, 0), name
        changes = dict(warehouse_query("SELECT change, count(*) FROM marts.segment_changes WHERE as_of_date = ? "
                                       "AND segment = ? GROUP BY 1", [D2, name]))
        assert int(row.find_element(By.CLASS_NAME, "entered").text) == changes.get("entered", 0)
        assert int(row.find_element(By.CLASS_NAME, "exited").text) == changes.get("exited", 0)
        # the trend has one dot per evaluated night
        assert len(row.find_elements(By.CSS_SELECTOR, "svg.trend circle")) == 2
    # member preview: emails only where dbt's consent decision (pii.segment_export_rows.consent_ok) says yes
    consent = {(s, c): ok for s, c, ok in warehouse_query(
        "SELECT segment, customer_id, consent_ok FROM pii.segment_export_rows WHERE as_of_date = ? AND is_member",
        [D2])}
    assert set(consent.values()) == {True, False}, "the shop needs customers with and without consent"
    seen = []
    for name, row in rows.items():
        for li in row.find_elements(By.CSS_SELECTOR, "ul.preview li"):
            customer = li.text.split(" ")[0]
            emails = [e.text for e in li.find_elements(By.CLASS_NAME, "email")]
            assert emails == ([f"{customer.lower()}@example.com"] if consent[(name, customer)] else []), li.text
            assert bool(li.find_elements(By.CLASS_NAME, "masked")) != consent[(name, customer)], li.text
            seen.append(consent[(name, customer)])
    assert set(seen) == {True, False}
    # the churn model's reasons under the members that have them (C2 on D2: tests.test_dbt_segments.REASONS)
    previewed = [li.text for row in rows.values() for li in row.find_elements(By.CSS_SELECTOR, "ul.preview li")]
    c2 = [t for t in previewed if t.startswith("C2 ")]
    assert c2 and all("churn risk: days_since_last_order high, sessions_30d low" in t for t in c2), previewed
    assert not [t for t in previewed if "churn risk:" in t and not t.startswith("C2 ")], previewed
    assert browser.find_element(By.ID, "models").text.count(":") == 3
    assert "export-sentence" not in browser.page_source  # exported normally: no hold sentence
    # kept under pytest's basetemp: docs/ui-segments.png is this screenshot of the demo (docs/ui.md)
    browser.save_screenshot(str(tmp_path_factory.mktemp("shots") / "ui-segments.png"))


def test_download_matches_the_manifest(server, browser, shop):
    from selenium.webdriver.common.by import By

    settings, _, _ = shop
    manifest = read_manifest(open_storage(settings.export_uri), D2)
    browser.get(server + "/")
    row = browser.find_element(By.CSS_SELECTOR, "#segments tr[data-segment='buyers']")
    row.find_element(By.CSS_SELECTOR, "a.download[data-kind='csv']").click()
    target = browser.downloads / f"{D2.isoformat()}-buyers.csv"
    deadline = time.monotonic() + 30
    while not target.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert target.exists(), f"no download in {browser.downloads}: {list(browser.downloads.iterdir())}"
    entry = manifest["segments"]["buyers"]["files"]["csv"]
    assert hashlib.sha256(target.read_bytes()).hexdigest() == entry["sha256"]
    assert target.read_text().count("\n") == entry["rows"] + 1


def result(browser, element_id: str):
    """The element once the page the form posted to has loaded (a click returns before that on a busy machine)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(browser, 30).until(expected_conditions.presence_of_element_located((By.ID, element_id)))


def _fill_rule(browser, server, name, where, description="Made in the browser test.", consent="marketing"):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    browser.get(server + "/rules")
    for field, value in (("name", name), ("description", description), ("where", where)):
        el = browser.find_element(By.ID, field)
        el.clear()
        el.send_keys(value)
    Select(browser.find_element(By.ID, "required_consent")).select_by_visible_text(consent)


def test_rule_editor_previews_sizes_as_dbt_computes_them(server, browser, shop):
    from selenium.webdriver.common.by import By

    _, seg_file, _ = shop
    before = seg_file.read_bytes()
    # the preview of an existing segment's rule equals what dbt built for it
    for name, where in (("buyers", "orders_count >= 1"), ("high_churn", "churn_decile >= 8")):
        _fill_rule(browser, server, f"{name}_copy", where)
        browser.find_element(By.ID, "preview").click()
        size = int(result(browser, "preview-size").text.replace(",", ""))
        assert size == warehouse_query("SELECT count(*) FROM marts.segment_members WHERE as_of_date = ? AND "
                                       "segment = ?", [D2, name])[0][0], name
    assert seg_file.read_bytes() == before, "a preview must not write segments.yml"


@pytest.mark.parametrize("where, refusal", [
    ("orders_count >= 1; drop table marts.segment_members", "';'"),
    ("orders_count in (select orders_count from raw.transactions)", "subqueries"),
    ("marketing_consent = false", "consent is applied"),
])
def test_rule_editor_refuses_unsafe_rules_and_leaves_the_file_alone(server, browser, shop, where, refusal):
    from selenium.webdriver.common.by import By

    _, seg_file, _ = shop
    before = seg_file.read_bytes()
    for button in ("preview", "save"):
        _fill_rule(browser, server, "sneaky", where)
        browser.find_element(By.ID, button).click()
        assert refusal in result(browser, "refusal").text, button
        assert not browser.find_elements(By.ID, "saved")
    assert seg_file.read_bytes() == before
    assert "sneaky" not in {s.name for s in load_segments(seg_file)}


def test_rule_editor_saves_a_valid_rule_atomically(server, browser, shop, tmp_path_factory):
    from selenium.webdriver.common.by import By

    _, seg_file, _ = shop
    _fill_rule(browser, server, "loyal_buyers", "orders_count >= 2 and coalesce(p_alive, 0) >= 0.3",
               description="Repeat buyers still active: loyalty programme.")
    browser.find_element(By.ID, "preview").click()
    assert result(browser, "preview-size").text.isdigit()
    browser.save_screenshot(str(tmp_path_factory.mktemp("shots") / "ui-rule-editor.png"))
    browser.find_element(By.ID, "save").click()
    assert "Saved segment loyal_buyers" in result(browser, "saved").text
    text = seg_file.read_text()
    assert text.startswith("# test shop segments (the page must keep this comment when it saves)")
    saved = {s.name: s for s in load_segments(seg_file)}
    assert saved["loyal_buyers"].where == "orders_count >= 2 and coalesce(p_alive, 0) >= 0.3"
    assert saved["loyal_buyers"].description == "Repeat buyers still active: loyalty programme."
    assert {"buyers", "high_churn", "maybe_alive"} <= set(saved)
    assert not list(seg_file.parent.glob(".segments.yml.*")), "temp file left behind"
    # the JSON lists it at once, not evaluated until the next nightly builds it
    with urllib.request.urlopen(server + "/api/segments") as r:
        api = {e["name"]: e for e in json.load(r)}
    assert api["loyal_buyers"] == {"name": "loyal_buyers", "as_of_date": D2.isoformat(), "size": None}
    # a save from a form opened before someone else changed the file is refused, and changes nothing
    _fill_rule(browser, server, "loyal_buyers", "orders_count >= 3")
    seg_file.write_text(seg_file.read_text() + "# edited by hand meanwhile\n")
    edited = seg_file.read_bytes()
    browser.find_element(By.ID, "save").click()
    assert "changed since the editor was opened" in result(browser, "refusal").text
    assert seg_file.read_bytes() == edited
    shutil.copy(seg_file, tmp_path_factory.mktemp("saved") / "segments.yml")
