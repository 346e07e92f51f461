"""The dashboard in a real browser: Debian's headless ``chromium``, driven through Selenium and
Debian's ``chromedriver`` (``.ci/run`` installs both). A server on 127.0.0.1 serves a seeded
SQLite database; the test opens each view, filters, searches, clicks into a trace and opens
its children, sees a live run arrive, and keeps a screenshot of each view (checked not blank).

Without chromium the test skips, saying why; under ``CI=true`` it fails instead.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from seed_data import Seeded, trace_records

from hookwire.stores import runner
from hookwire.stores.traces import spans_from_records
from hookwire.ui.server import DashboardServer

CHROMIUM = os.environ.get("HOOKWIRE_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("HOOKWIRE_TEST_CHROMEDRIVER", "/usr/bin/chromedriver")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
#: Seconds a page may take to show what is waited for (a bound on a loaded machine, not a
#: speed target: speed is measured in bench/).
WAIT = 60


def _browser_or_skip() -> None:
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not shutil.which(p)]
    try:
        import selenium  # noqa: F401 - only whether it is there
    except ImportError:
        missing.append("the selenium package (pip install -e '.[test]')")
    if missing:
        reason = f"no browser to test the dashboard in: {', '.join(missing)} missing"
        if IN_CI:
            pytest.fail(f"{reason}, and CI=true requires it (.ci/run installs chromium)")
        pytest.skip(f"{reason} (apt-get install chromium chromium-driver)")


@pytest.fixture
def browser() -> Iterator[Any]:
    _browser_or_skip()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1400,900", "--no-first-run", "--disable-extensions"):  # fmt: skip
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(WAIT)
    try:
        yield driver
    finally:
        driver.quit()


def _shot(driver: Any, folder: Path, name: str) -> None:
    """Keep a screenshot of the view, and check that it shows something."""
    png = driver.get_screenshot_as_png()
    (folder / f"{name}.png").write_bytes(png)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    # a blank page compresses to a few hundred bytes; text, tables and bars do not
    assert len(png) > 8000, f"the {name} view looks blank"
    assert driver.find_element("id", "main").text.strip(), f"the {name} view shows no text"


def _all_text(driver: Any, element_id: str) -> str:
    """The text of an element, scrolled out of sight or not (``.text`` is what is seen)."""
    return str(driver.find_element("id", element_id).get_attribute("textContent"))


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_every_view_in_chromium(
    browser: Any, dashboard: tuple[DashboardServer, Seeded], tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    server, seeded = dashboard
    wait = WebDriverWait(browser, WAIT)
    browser.get(server.url)

    # runs, newest first
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "tr.run-row")) == 3)
    rows = browser.find_elements(By.CSS_SELECTOR, "tr.run-row")
    assert [r.get_attribute("data-trace") for r in rows] == seeded.runs
    assert "Support Agent" in rows[0].text and "$0.0020" in rows[0].text
    _shot(browser, tmp_path, "runs")

    # a live run arrives without a reload
    fresh = "live-" + seeded.runs[0][::-1]
    records = trace_records(fresh, time.time(), seeded.user)
    runner.run_sync(seeded.store.record(spans_from_records(records)))
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, f'tr.run-row[data-trace="{fresh}"]'))
    first = browser.find_elements(By.CSS_SELECTOR, "tr.run-row")[0]
    assert first.get_attribute("data-trace") == fresh

    # search, then filter by status
    search = browser.find_element(By.NAME, "q")
    search.send_keys(seeded.runs[1])
    browser.find_element(By.CSS_SELECTOR, "form.filters button[type=submit]").click()
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "tr.run-row")) == 1)
    assert (
        browser.find_element(By.CSS_SELECTOR, "tr.run-row").get_attribute("data-trace")
        == seeded.runs[1]
    )
    browser.get(server.url + "#/runs?user=nobody")
    wait.until(lambda d: "No runs yet" in d.find_element(By.ID, "runs").text)

    # click into a trace: its root, then its children a level at a time
    browser.get(server.url + "#/runs")
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "tr.run-row")) == 4)
    browser.find_element(By.CSS_SELECTOR, f'tr.run-row[data-trace="{seeded.runs[1]}"]').click()
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, ".span-row[data-span]"))
    assert browser.current_url.endswith(f"#/trace/{seeded.runs[1]}")
    wait.until(lambda d: "question of" in _all_text(d, "detail"))
    # the root opens at once; its toggle closes it and opens it again (loading its children)
    spans = ".span-row[data-span]"
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, spans)) == 3)
    root = browser.find_element(By.CSS_SELECTOR, f'.span-row[data-span="{seeded.runs[1]}"]')
    root.find_element(By.CSS_SELECTOR, ".toggle").click()
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, spans)) == 1)
    root.find_element(By.CSS_SELECTOR, ".toggle").click()
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, spans)) == 3)
    tool = browser.find_element(By.CSS_SELECTOR, f'.span-row[data-span="{seeded.runs[1]}-tool"]')
    assert "ConnectionError" in tool.text
    llm = browser.find_element(By.CSS_SELECTOR, f'.span-row[data-span="{seeded.runs[1]}-llm"]')
    llm.click()
    wait.until(lambda d: "retries" in _all_text(d, "detail"))
    detail = _all_text(browser, "detail")
    assert "where is my order?" in detail and "gpt-4o" in detail and "$0.0020" in detail
    # clicking a closed span also opens it: its retry is a level below
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, ".span-row[data-level='2']"))
    assert (
        "RateLimitError" in browser.find_element(By.CSS_SELECTOR, ".span-row[data-level='2']").text
    )
    _shot(browser, tmp_path, "trace")

    # conversations, and a turn's link to its trace
    browser.get(server.url + "#/conversations")
    wait.until(lambda d: "Order help" in d.find_element(By.ID, "main").text)
    _shot(browser, tmp_path, "conversations")
    browser.find_element(By.XPATH, "//td[text()='Order help']").click()
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, ".msg"))
    assert "state: normal" in browser.find_element(By.ID, "main").text
    browser.find_element(By.LINK_TEXT, "trace").click()
    wait.until(lambda d: d.current_url.endswith(f"#/trace/{seeded.runs[0]}"))

    # costs against the budgets, and health
    browser.get(server.url + "#/costs")
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, ".meter"))
    text = browser.find_element(By.ID, "main").text
    assert f"user {seeded.user}" in text and "org acme" in text and "/day" in text
    assert browser.find_elements(By.CSS_SELECTOR, "svg.chart rect")
    _shot(browser, tmp_path, "costs")
    browser.get(server.url + "#/health")
    wait.until(lambda d: "latency p50" in d.find_element(By.ID, "main").text)
    assert "ConnectionError" in browser.find_element(By.ID, "main").text
    _shot(browser, tmp_path, "health")

    errors = [e for e in browser.get_log("browser") if e.get("level") == "SEVERE"]
    assert errors == []
