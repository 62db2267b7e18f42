"""The operators' web page in a real headless browser (Debian's chromium and chromedriver): a live
warning appears within 2 s of its creation, its whole row in the tier's colour, departments by
name, an orange or red one announced; its detail has the incident's history and river map; an
acknowledgement made on the page is recorded; with nothing to show the page says so."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pipeline.influx import influxql
from pipeline.operators import follow_warnings
from pipeline.processes import wait_until
from pipeline.schemas import Kind, Quantity, Reading
from sensors_sim.publisher import publish, reading_messages
from tests.integration.conftest import free_port

pytestmark = pytest.mark.integration
STATION, DISTRICT = "jialing-ciqikou", "shapingba"
SCREENSHOT = os.environ.get("YUFLOW_WEB_SCREENSHOT")  # where to keep the page's picture (docs/web.png for the README)


@pytest.fixture(scope="module")
def page(stack):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver_path):
        pytest.fail("chromium and chromium-driver are needed (scripts/test installs them)")
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", "web", "--port", str(port)],
        env=os.environ.copy(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}/"
    wait_until(lambda: _ok(url + "health"), 30, what="the web page")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,900"):
        options.add_argument(flag)
    browser = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        browser.get(url)
        wait_until(lambda: browser.find_element("id", "status").text == "live", 30, what="the page's live stream")
        time.sleep(
            2
        )  # past the replay of what was there before: from now on, new orange and red warnings are announced
        browser.live_since = datetime.now(UTC)
        yield browser
    finally:
        browser.quit()
        server.terminate()
        server.wait(10)


def retry(action, timeout_s: float = 10):
    from selenium.common.exceptions import StaleElementReferenceException

    def attempt():
        try:
            action()
            return True
        except StaleElementReferenceException:
            return False

    wait_until(attempt, timeout_s, interval_s=0.05, what="a page element that stays put")


def stack_station_name() -> str:
    from pipeline.city import default_city

    return default_city().site_name(STATION)


def _ok(url: str) -> bool:
    try:
        return urllib.request.urlopen(url, timeout=2).status == 200
    except OSError:
        return False


def test_a_live_warning_shows_within_2_s_and_an_acknowledgement_is_recorded(stack, page):
    readings = [
        Reading(
            sensor_id=f"wq-{STATION}",
            kind=Kind.water,
            station=STATION,
            district=DISTRICT,
            ts=datetime.now(UTC),
            values={"do": Quantity(value=1.5, unit="mg/L")},
        )
    ]
    for _ in range(3):
        readings[0] = readings[0].model_copy(update={"ts": datetime.now(UTC)})
        publish(reading_messages(readings, stack.settings.mqtt.topic_root), stack.settings.mqtt)
        time.sleep(0.2)

    async def first_warning():
        async for w in follow_warnings(stack.settings, from_beginning=True, timeout_s=60):
            if w.station == STATION:
                return w

    warning = asyncio.run(first_warning())
    assert warning is not None, stack.worker.log_tail(40)
    row = f'tr[data-incident="{warning.incident_id}"]'
    wait_until(lambda: page.find_elements("css selector", row), 10, interval_s=0.05, what="the warning on the page")
    shown_after_s = (datetime.now(UTC) - warning.issued_at).total_seconds()
    assert shown_after_s < 2.0, shown_after_s
    text = ""

    def read_row():
        nonlocal text
        text = page.find_element(
            "css selector", row
        ).text  # the incident's latest tier (it may have escalated meanwhile)

    retry(read_row)
    assert stack_station_name() in text and any(t in text.split()[0] for t in ("BLUE", "YELLOW", "ORANGE", "RED"))
    # read at once in the page: rows are redrawn as events arrive
    shown = page.execute_script(
        "const r = document.querySelector(arguments[0]); "
        "return [r.className, r.querySelector('.tier').textContent.toLowerCase(), r.innerText];",
        row,
    )
    row_class, tier, row_text = shown
    assert f"row-{tier}" in row_class  # the whole row in the tier's colour
    assert "基层治理中心" in row_text  # departments by name (the id on hover)

    async def incident_warnings():
        return [
            w
            async for w in follow_warnings(stack.settings, from_beginning=True, timeout_s=3)
            if w.incident_id == warning.incident_id
        ]

    rank = ["blue", "yellow", "orange", "red"]
    history = asyncio.run(incident_warnings())
    raised = [
        w
        for i, w in enumerate(history)
        if rank.index(w.tier.value) >= 2
        and w.issued_at > page.live_since
        and all(rank.index(e.tier.value) < rank.index(w.tier.value) for e in history[:i])
    ]
    if raised:  # the incident went orange or red while the page was open: the duty desk is alerted
        assert "NEW" in page.find_element("id", "banner").get_attribute("textContent")

    retry(lambda: page.find_element("css selector", row).click())  # rows are redrawn as events arrive
    detail = page.find_element("id", "detail")
    assert "Checklist" in detail.text and "History" in detail.text and page.find_elements("css selector", "#history li")
    assert "River map" in detail.text and page.find_elements(
        "css selector", "#detail svg circle"
    )  # the river, its stations
    page.find_element("id", "by").clear()
    page.find_element("id", "by").send_keys("沙坪坝区水利局 值班员")
    page.find_element("id", "ack").click()
    wait_until(
        lambda: "acknowledged" in page.find_element("id", "lifecycle").text, 20, what="the acknowledgement on the page"
    )
    query = (
        f'SELECT "stage", "actor" FROM lifecycle WHERE incident_id = \'{warning.incident_id}\' '
        "AND \"source\" = 'operator'"
    )
    rows = wait_until(
        lambda: [r for s in influxql(stack.settings.influx, query) for r in s["values"]],
        30,
        what="the acknowledgement in InfluxDB",
    )
    assert [r[1:] for r in rows] == [["acknowledged", "沙坪坝区水利局 值班员"]]
    if SCREENSHOT:
        Path(SCREENSHOT).parent.mkdir(parents=True, exist_ok=True)
        page.save_screenshot(SCREENSHOT)
    # a maintenance window shows above the table (a sensor no later test uses, for two minutes)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipeline.cli",
            "silence",
            "add",
            "--sensor",
            "wq-huaxi-lijiatuo",
            "--until",
            "2m",
            "--reason",
            "web test: 设备维护",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=os.environ.copy(),
    )
    assert done.returncode == 0, done.stderr
    wait_until(lambda: "设备维护" in page.find_element("id", "silences").text, 15, what="the silence on the page")
    # an incident whose tier keeps changing is marked as flapping (three changes in the last hour)
    page.execute_script(
        """const id = arguments[0], w = incidents.get(id), now = Date.now();
        history.set(id, ["yellow", "orange", "yellow", "orange"].map((tier, i) =>
            ({...w, tier, issued_at: new Date(now - (40 - 10 * i) * 60e3).toISOString()}))); render();""",
        warning.incident_id,
    )
    assert "flapping (3× in 1 h)" in page.find_element("css selector", row).text
    page.execute_script("incidents.clear(); render();")  # what a quiet desk sees
    assert "No warnings" in page.find_element("id", "rows").text


def test_the_report_draws_the_days_incidents_from_influxdb(stack, tmp_path):
    out = tmp_path / "report.html"
    done = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "report", "--out", str(out), "--days", "1"],
        capture_output=True,
        text=True,
        timeout=120,
        env=os.environ.copy(),
    )
    assert done.returncode == 0, done.stderr
    page = out.read_text(encoding="utf-8")
    warned = influxql(stack.settings.influx, 'SELECT count("warning_id") FROM warnings WHERE time > now() - 1d')[0][
        "values"
    ][0][1]
    assert f"{warned} warning(s)" in page and page.count("data:image/png;base64,") == 2


def test_every_query_in_docs_queries_md_runs(stack):
    import re

    text = (Path(__file__).parents[2] / "docs" / "queries.md").read_text(encoding="utf-8")
    queries = [
        line
        for block in re.findall(r"```sql\n(.*?)```", text, flags=re.S)
        for line in block.splitlines()
        if line.strip()
    ]
    assert len(queries) >= 15
    answered = 0
    for q in queries:
        answered += bool(influxql(stack.settings.influx, q))  # raises on an InfluxQL error
    assert answered >= len(queries) // 2  # most have data after the session's scenarios


def test_the_readme_influx_cli_example_runs_against_the_live_database(stack):
    """Analysts' own client: the `influx` CLI line from the README, pointed at this session's InfluxDB."""
    import re
    import shlex
    from urllib.parse import urlparse

    text = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    line = next(
        x
        for block in re.findall(r"```sh\n(.*?)```", text, flags=re.S)
        for x in block.splitlines()
        if x.startswith("influx ")
    )
    argv = shlex.split(line)
    argv[argv.index("-port") + 1] = str(urlparse(stack.settings.influx.url).port)
    argv[argv.index("-database") + 1] = stack.settings.influx.database
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0 and "ERR" not in done.stdout + done.stderr, (done.stdout, done.stderr)


def test_every_query_of_the_grafana_dashboard_runs_against_the_live_database(stack):
    """docs/grafana-dashboard.json (InfluxQL datasource): each panel's query and the variable's, with
    Grafana's macros filled in as Grafana fills them."""
    import json

    dashboard = json.loads((Path(__file__).parents[2] / "docs" / "grafana-dashboard.json").read_text(encoding="utf-8"))
    queries = [t["query"] for p in dashboard["panels"] for t in p["targets"]] + [
        v["query"] for v in dashboard["templating"]["list"]
    ]
    assert len(queries) >= 8
    macros = {
        "$timeFilter": "time > now() - 7d",
        "$__interval": "1h",
        "/^$station$/": "/^(puhe-zhaixi-bridge|jialing-ciqikou)$/",
    }
    for q in queries:
        for macro, value in macros.items():
            q = q.replace(macro, value)
        assert "$t" not in q and "$_" not in q and "$s" not in q, q  # every macro filled in (a regex's $ anchor stays)
        influxql(stack.settings.influx, q)  # raises on an InfluxQL error
