"""The dashboard at /ui in headless Chromium (Debian's chromium and chromium-driver, driven by
Selenium; nothing is downloaded), against a real gateway in front of tumblebug, dragonfly and
ladybug (with CloudTwin VMs whose agents send metrics and run the app's instances).

Screenshots of each view land in the test's temporary directory; with CB_DASHBOARD_SCREENSHOTS
set to a directory (docs/img) they are copied there too.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from cbapi.spider.v1 import spider_pb2_grpc
from cbapi.tumblebug.v1 import tumblebug_pb2 as pb
from cbapi.tumblebug.v1 import tumblebug_pb2_grpc
from services.rpc.client import channel
from tests import servers
from tests.integration.tumblebug.helpers import cheapest_spec_and_image, connections, namespace, settled_at, wait_mcis
from tests.support.gateway import KEY, start_gateway
from tests.support.ladybug import stop_stray_haproxies

# One instance per VM of `demo`, a static file server as the workload.
WEB_APP = {"name": "web", "mcis": "demo", "spec": {
    "artifact": {"command": 'exec python3 -m http.server "$PORT" --bind "$HOST"'},
    "ports": [{"name": "http", "port": 8080}], "instances": 2}}

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
AXE = Path(__file__).with_name("assets") / "axe.min.js"

pytestmark = pytest.mark.skipif(not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
                                reason="needs Debian's chromium and chromium-driver")


@dataclass
class Stack:
    url: str
    ns: str
    regions: set[str]  # provider/region of the demo MCIS's VMs
    vms: list[str]


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def stack(tmp_path_factory: pytest.TempPathFactory, spider_process: servers.Server,
                monitored_tumblebug_process: servers.Server,
                cloudtwin_process: servers.Server, etcd_process: servers.Server) -> AsyncIterator[Stack]:
    """A gateway routing tumblebug, dragonfly and ladybug, and MCIS `demo`: one VM in each of two
    regions, agents healthy; ladybug is routed (its app comes with `web_app`)."""
    dragonfly = monitored_tumblebug_process.env["CB_TUMBLEBUG_DRAGONFLY_ADDR"]
    run = tmp_path_factory.mktemp("dashboard")
    ladybug = await servers.start_ladybug(run / "ladybug", etcd_process, monitored_tumblebug_process, dragonfly,
                                          CB_LADYBUG_ENDPOINT_RUN_DIR=str(run / "cbep"))
    gw = await start_gateway(run / "gateway", {"tumblebug": monitored_tumblebug_process.address, "dragonfly": dragonfly,
                                                "ladybug": ladybug.address})
    try:
        async with channel(monitored_tumblebug_process.address) as ch, \
                channel(spider_process.address) as spider_ch:
            tb, stub = tumblebug_pb2_grpc.TumblebugStub(ch), spider_pb2_grpc.SpiderStub(spider_ch)
            ns = await namespace(tb)
            groups = []
            for group, conn in zip("ab", await connections(stub, cloudtwin_process, 2), strict=True):
                spec, image = await cheapest_spec_and_image(stub, conn.name)
                groups.append(pb.DynamicSubgroup(name=group, spec_id=f"{conn.name}+{spec}", image_id=image, size=1))
            await tb.CreateMcisDynamic(pb.CreateMcisDynamicRequest(namespace=ns, name="demo", subgroups=groups))
            await wait_mcis(tb, ns, "demo", settled_at("Running"))
            vms = list((await tb.ListMcisVms(pb.ListMcisVmsRequest(namespace=ns, mcis="demo"))).vms)
            yield Stack(gw.url, ns, {f"{v.provider}/{v.region}" for v in vms}, sorted(v.name for v in vms))
            await tb.DeleteMcis(pb.DeleteMcisRequest(namespace=ns, name="demo", terminate=True, wait=True))
    finally:
        gw.proc.stop()
        ladybug.stop()
        stop_stray_haproxies(run / "cbep")


@pytest.fixture(scope="module")
def web_app(stack: Stack) -> Iterator[str]:
    """Ladybug's app `web` on `demo`, created when first needed: after the tests that suspend the
    demo's VMs, so ladybug does not move instances (and grow the MCIS) under them."""
    with httpx.Client(base_url=stack.url, headers={"Authorization": f"Bearer {KEY}"}, timeout=30) as api:
        reply = api.post(f"/ladybug/v1/namespaces/{stack.ns}/apps", json=WEB_APP)
        assert reply.status_code == 200, reply.text
        yield "web"
        api.delete(f"/ladybug/v1/namespaces/{stack.ns}/apps/web")


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    """Headless Chromium with a fresh profile and no network of its own (no updates, sync, QUIC)."""
    profile = tempfile.mkdtemp(prefix="cb-chromium-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--window-size=1280,900"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(options=opts, service=Service(executable_path=str(CHROMEDRIVER)))
    driver.set_script_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("dashboard-screenshots")


def screenshot(driver: WebDriver, shots: Path, name: str) -> None:
    path = shots / f"dashboard-{name}.png"
    assert driver.save_screenshot(str(path)), path
    copy_to = os.environ.get("CB_DASHBOARD_SCREENSHOTS")
    if copy_to:
        shutil.copy(path, Path(copy_to) / path.name)


def wait(driver: WebDriver, cond: str, timeout: float = 20, *args: object) -> object:
    """Until the JavaScript expression `cond` is truthy; returns its value."""
    return WebDriverWait(driver, timeout, poll_frequency=0.05).until(
        lambda d: d.execute_script(f"return ({cond});", *args))


def sign_in(driver: WebDriver, key: str) -> None:
    field = driver.find_element(By.ID, "login-key")
    field.clear()
    field.send_keys(key)
    driver.find_element(By.CSS_SELECTOR, "#login-form button[type=submit]").click()


def open_view(driver: WebDriver, stack: Stack, hash_: str) -> None:
    driver.get(f"{stack.url}/ui/{hash_}")
    if driver.execute_script("return document.getElementById('login').open"):
        sign_in(driver, KEY)
    wait(driver, "document.getElementById('view').dataset.ready === 'true' && location.hash === arguments[0]", 20,
         hash_)


# ---------------------------------------------------------------- tests


def test_the_page_loads_without_a_key_but_its_data_needs_one(stack: Stack, browser: WebDriver,
                                                             shots: Path) -> None:
    page = httpx.get(f"{stack.url}/ui", follow_redirects=True)
    assert page.status_code == 200 and "<main id=\"view\"" in page.text
    assert [r.status_code for r in page.history] == [308]
    assert "default-src 'self'" in page.headers["content-security-policy"]
    outline = httpx.get(f"{stack.url}/ui/vendor/world.svg", headers={"Accept-Encoding": "gzip"})
    assert outline.headers["content-encoding"] == "gzip" and outline.text.startswith("<svg")
    missing = httpx.get(f"{stack.url}/ui/js/nosuch.js")
    assert missing.status_code == 404 and missing.json()["code"] == 5
    assert httpx.get(f"{stack.url}/tumblebug/v1/namespaces").status_code == 401

    browser.get(f"{stack.url}/ui/#/map")
    wait(browser, "document.getElementById('login').open")
    assert browser.find_elements(By.CSS_SELECTOR, ".marker") == []
    screenshot(browser, shots, "login")

    sign_in(browser, "not-the-key")
    wait(browser, "document.getElementById('login-error').textContent.includes('refused')")
    assert browser.execute_script("return document.getElementById('login').open")
    assert browser.execute_script("return sessionStorage.getItem('cb.apiKey')") is None

    sign_in(browser, KEY)
    wait(browser, "!document.getElementById('login').open && document.querySelectorAll('.marker').length > 0")

    # Everything came from the gateway, and the first load (page, scripts, styles, uPlot, the world
    # outline; compressed) stays small.
    loaded = browser.execute_script(
        "return performance.getEntriesByType('navigation').concat(performance.getEntriesByType('resource'))"
        ".map((e) => [e.name, e.transferSize])")
    assert all(name.startswith(stack.url + "/") for name, _ in loaded), loaded
    first_load = sum(size for name, size in loaded if name.startswith(stack.url + "/ui/"))
    print(f"dashboard first load: {first_load} bytes over {len(loaded)} requests")
    assert 0 < first_load < 120_000, loaded

    # A key that stops working (revoked, mistyped in another tab) brings the login back.
    browser.execute_script("sessionStorage.setItem('cb.apiKey', 'stale')")
    browser.get(f"{stack.url}/ui/#/mcis")
    wait(browser, "document.getElementById('login').open")
    assert "refused" in browser.find_element(By.ID, "login-error").text


def test_the_demo_mcis_is_on_the_map_once_per_region(stack: Stack, browser: WebDriver, shots: Path) -> None:
    open_view(browser, stack, "#/map")
    css = f'.marker[data-mcis="demo"][data-ns="{stack.ns}"]'
    wait(browser, f"document.querySelectorAll('{css}').length > 0")
    markers = browser.find_elements(By.CSS_SELECTOR, css)
    assert len(stack.regions) == 2
    assert sorted(m.get_attribute("data-region") for m in markers) == sorted(stack.regions)
    assert {m.get_attribute("data-status") for m in markers} == {"RUNNING"}
    # Each marker sits on the map, not at (0, 0) for want of a location.
    for m in markers:
        circle = m.find_element(By.TAG_NAME, "circle")
        assert (float(circle.get_attribute("cx")), float(circle.get_attribute("cy"))) != (180.0, 90.0)
    screenshot(browser, shots, "map")

    browser.execute_script("arguments[0].dispatchEvent(new MouseEvent('click', {bubbles: true}))", markers[0])
    wait(browser, f"location.hash === '#/mcis/{stack.ns}/demo' && document.querySelectorAll('#vms tbody tr').length === 2")


def test_the_mcis_list_shows_the_demo(stack: Stack, browser: WebDriver, shots: Path) -> None:
    open_view(browser, stack, "#/mcis")
    wait(browser, "document.querySelector('tr[data-mcis=\"demo\"]') !== null")
    screenshot(browser, shots, "mcis-list")


def test_a_vm_status_change_through_the_api_shows_within_3s(stack: Stack, browser: WebDriver, shots: Path) -> None:
    open_view(browser, stack, f"#/mcis/{stack.ns}/demo")
    vm = stack.vms[0]
    row = f'#vms tr[data-vm="{vm}"]'
    wait(browser, f"document.querySelector('{row}')?.dataset.status === 'RUNNING'")
    browser.execute_script("window.notReloaded = true")
    api = httpx.Client(base_url=stack.url, headers={"Authorization": f"Bearer {KEY}"}, timeout=30)
    with api:
        reply = api.post(f"/tumblebug/v1/namespaces/{stack.ns}/mcis/demo:suspend", json={"vm": vm})
        assert reply.status_code == 200, reply.text
        try:
            wait(browser, f"document.querySelector('{row}')?.dataset.status !== 'RUNNING'", 3)
        except TimeoutException:
            pytest.fail(f"the page still shows {vm} Running 3 s after the suspend")
        assert browser.execute_script("return window.notReloaded") is True
        wait(browser, f"document.querySelector('{row}')?.dataset.status === 'SUSPENDED'", 30)
        screenshot(browser, shots, "mcis-suspended")
        reply = api.post(f"/tumblebug/v1/namespaces/{stack.ns}/mcis/demo:resume", json={"vm": vm, "wait": True})
        assert reply.status_code == 200, reply.text
        wait(browser, f"document.querySelector('{row}')?.dataset.status === 'RUNNING'", 30)


def test_the_verbs_ask_first(stack: Stack, browser: WebDriver) -> None:
    open_view(browser, stack, f"#/mcis/{stack.ns}/demo")
    reboot = browser.find_element(By.XPATH, "//div[@aria-label='MCIS actions']/button[text()='Reboot']")
    reboot.click()
    wait(browser, "document.getElementById('confirm').open")
    assert "Reboot every VM of demo" in browser.find_element(By.ID, "confirm-text").text
    browser.find_element(By.CSS_SELECTOR, "#confirm button[value=cancel]").click()
    wait(browser, "!document.getElementById('confirm').open")
    mcis = httpx.get(f"{stack.url}/tumblebug/v1/namespaces/{stack.ns}/mcis/demo",
                     headers={"Authorization": f"Bearer {KEY}"}).json()
    assert mcis["targetAction"] == "ACTION_NONE"  # cancelled: nothing was sent


def test_charts_have_points(stack: Stack, browser: WebDriver, shots: Path) -> None:
    open_view(browser, stack, f"#/mcis/{stack.ns}/demo")
    for group in ("cpu", "memory", "disk", "network"):
        wait(browser, f"Number(document.querySelector('.chart[data-group={group}]').dataset.points) > 0", 40)
    assert browser.find_elements(By.CSS_SELECTOR, ".chart[data-group=cpu] canvas")
    browser.execute_script("document.getElementById('metrics-title').scrollIntoView()")
    screenshot(browser, shots, "metrics")

    # One VM's charts come from dragonfly's per-VM route.
    vm = stack.vms[1]
    browser.execute_script("const s = document.getElementById('metrics-vm'); s.value = arguments[0];"
                           "s.dispatchEvent(new Event('change'))", vm)
    wait(browser, "document.querySelector('.chart[data-group=cpu]').getAttribute('aria-label')"
                  f".startsWith('CPU of VM {vm}: ') && Number(document.querySelector('.chart[data-group=cpu]')"
                  ".dataset.points) > 0", 20)


def test_the_placement_form_ranks_specs_and_a_plan_shows_on_the_map(stack: Stack, browser: WebDriver,
                                                                    shots: Path) -> None:
    open_view(browser, stack, "#/placement")
    browser.find_element(By.CSS_SELECTOR, "#recommend-form button[type=submit]").click()
    wait(browser, "document.querySelectorAll('#ranked tr.ranked').length > 0", 30)
    rows = browser.find_elements(By.CSS_SELECTOR, "#ranked tr.ranked")
    assert [r.find_element(By.TAG_NAME, "td").text for r in rows] == [str(i + 1) for i in range(len(rows))]
    assert "cost" in rows[0].find_element(By.CSS_SELECTOR, ".scores").text  # the default weigher's score
    # Cheapest first under the cost weigher: the page keeps the server's order.
    prices = [float(r.find_elements(By.TAG_NAME, "td")[5].text) for r in rows]
    assert prices == sorted(prices), prices

    browser.execute_script("document.getElementById('p-ns').value = arguments[0]", stack.ns)
    browser.find_element(By.CSS_SELECTOR, "#plan-form button[type=submit]").click()
    wait(browser, "document.getElementById('plan-status').dataset.status", 40)
    status = browser.find_element(By.ID, "plan-status")
    assert status.get_attribute("data-status") in ("optimal", "time_limit"), status.text
    assert "$" in status.text and "/h" in status.text
    markers = browser.find_elements(By.CSS_SELECTOR, "#plan-map .plan-marker")
    assert len(markers) >= 2  # at least two regions were asked for
    assert sum(int(m.get_attribute("data-vms")) for m in markers) == 3
    browser.execute_script("document.getElementById('plan-title').scrollIntoView()")
    screenshot(browser, shots, "placement")


def test_the_apps_view_lists_the_app_and_follows_it(stack: Stack, web_app: str, browser: WebDriver,
                                                    shots: Path) -> None:
    open_view(browser, stack, "#/apps")
    row = f'#apps tr[data-app="web"][data-ns="{stack.ns}"]'
    wait(browser, f"document.querySelector('{row}') !== null", 20)
    # The list re-renders every 5 s: read and follow the row in one script, not through stale handles.
    assert "r1" in browser.execute_script(f"return document.querySelector('{row}').textContent")
    screenshot(browser, shots, "apps")

    browser.execute_script(f"document.querySelector('{row} a').click()")
    wait(browser, f"location.hash === '#/apps/{stack.ns}/web' && document.getElementById('view').dataset.ready === 'true'")
    # Instances are placed, one per VM of the demo MCIS, and the phase comes over the watch stream.
    wait(browser, "document.querySelectorAll('#instances tbody tr').length === 2", 60)
    # The table re-renders as the watch stream brings news: its cells are read in one script.
    vms = browser.execute_script(
        "return [...document.querySelectorAll('#instances tbody tr td:nth-child(2)')].map(td => td.textContent.trim())")
    assert set(vms) == set(stack.vms)
    browser.execute_script("window.notReloaded = true")
    wait(browser, "document.getElementById('app-status').dataset.phase === 'AVAILABLE'", 90)
    assert browser.execute_script("return window.notReloaded") is True
    assert browser.find_elements(By.CSS_SELECTOR, "#events tbody tr")
    wait(browser, "document.getElementById('rollout')?.dataset.done === 'true'", 10)
    assert "r0 → r1" in browser.find_element(By.ID, "rollout").text
    screenshot(browser, shots, "app-detail")


def test_alert_events_show(stack: Stack, browser: WebDriver, shots: Path) -> None:
    # A rule every point breaks, so dragonfly fires it with the next metrics of the demo MCIS.
    rule = {"name": "busy", "mcis": "demo", "metric": "cpu.utilization_percent", "operator": ">=", "threshold": 0,
            "severity": "WARNING"}
    reply = httpx.post(f"{stack.url}/dragonfly/v1/namespaces/{stack.ns}/alert-rules", json=rule,
                       headers={"Authorization": f"Bearer {KEY}"})
    assert reply.status_code == 200, reply.text
    open_view(browser, stack, "#/alerts")
    wait(browser, "[...document.querySelectorAll('#alerts tbody td')].some((td) => td.textContent === 'busy')", 40)
    assert "Firing" in browser.find_element(By.ID, "alerts").text
    screenshot(browser, shots, "alerts")


@pytest.mark.parametrize("view", ["#/map", "#/mcis", "#/mcis/{ns}/demo", "#/alerts", "#/placement", "#/apps",
                                  "#/apps/{ns}/web"])
def test_no_critical_accessibility_violation(stack: Stack, web_app: str, browser: WebDriver, view: str) -> None:
    open_view(browser, stack, view.format(ns=stack.ns))
    browser.execute_script(AXE.read_text())
    result = browser.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "axe.run(document, {resultTypes: ['violations']}).then((r) => done(r.violations.map("
        "(v) => ({id: v.id, impact: v.impact, nodes: v.nodes.length, help: v.help}))), (e) => done(String(e)));")
    assert isinstance(result, list), result
    critical = [v for v in result if v["impact"] == "critical"]
    assert critical == [], critical
