"""The reports plugin in a real Airflow api-server: authentication on every route, no way out of the
registry, and the run report tab and the history page in a real browser (headless Chromium via Selenium).

Needs PostgreSQL (a scheduler runs the DAG) and Debian's chromium and chromium-driver; skips with a reason
where they are absent, and fails instead in CI (RETRAIN_REQUIRE_SERVICES=1), whose script installs them.
"""

from __future__ import annotations

import json
import shutil
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from retrain.demo_data import write_demo_data
from tests.support.airflow_stack import POSTGRES_SERVICE, ROOT, AirflowStack, require, unavailable

pytestmark = [pytest.mark.slow, pytest.mark.services]

DAG = "retrain__churn"
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[AirflowStack, str]]:
    """An api-server with the plugin, a scheduler, and one finished run of the churn model."""
    require(POSTGRES_SERVICE, "a scheduler and the api-server share the metadata DB")
    root = tmp_path_factory.mktemp("reports-ui")
    write_demo_data(root / "data", months=1, start="2025-01", rows=4000, config_path=root / "models" / "churn.toml")
    home = root / "airflow"
    home.mkdir()
    env = {
        "RETRAIN_CONFIG_DIR": str(root / "models"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
    }
    with AirflowStack(home, extra_env=env) as stack:
        stack.wait_until(lambda: stack.dag_is_parsed(DAG), timeout=180, what="the DAG to be parsed")
        run_id = stack.trigger(DAG, {"month": "2025-01"})
        assert stack.wait_for_run(DAG, run_id, timeout=300) == "success"
        # A month whose files are corrupt: pull_snapshots fails at once (bad data is never retried).
        for role in ("production", "labeled"):
            broken = root / "data" / role / "month=2025-02"
            broken.mkdir()
            (broken / "part-0000.parquet").write_bytes(b"not parquet")
        failed_run = stack.trigger(DAG, {"month": "2025-02"})
        assert stack.wait_for_run(DAG, failed_run, timeout=300) == "failed"
        stack.failed_run = failed_run
        yield stack, run_id


def get(stack: AirflowStack, path: str, token: str | None = None) -> tuple[int, str, dict[str, str]]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(f"http://127.0.0.1:{stack.api_port}{path}", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read().decode(), dict(response.headers)
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(errors="replace"), dict(error.headers)


def token(stack: AirflowStack) -> str:
    request = urllib.request.Request(
        f"http://127.0.0.1:{stack.api_port}/auth/token",
        data=json.dumps({"username": "admin", "password": stack.admin_password}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())["access_token"]


def test_every_route_requires_a_login(deployment: tuple[AirflowStack, str]) -> None:
    stack, run_id = deployment
    routes = ["/retrain/", f"/retrain/history/{DAG}", f"/retrain/runs/{DAG}/{run_id}"]
    for route in routes:
        status, body, _ = get(stack, route)
        assert status in (401, 403), f"{route} answered {status} to an anonymous request"
        assert "BOOTSTRAPPED" not in body
        assert get(stack, route, token="not-a-token")[0] in (401, 403)
    good = token(stack)
    for route in routes:
        assert get(stack, route, good)[0] == 200, route


def test_the_run_report_and_the_history_served_from_the_registry(deployment: tuple[AirflowStack, str]) -> None:
    stack, run_id = deployment
    good = token(stack)
    status, page, headers = get(stack, f"/retrain/runs/{DAG}/{run_id}", good)
    assert status == 200 and "BOOTSTRAPPED" in page and "no champion yet; first model" in page
    assert "data:image/svg+xml;base64," in page, "charts are inline"
    assert "default-src 'none'" in headers["content-security-policy"]
    status, history, _ = get(stack, f"/retrain/history/{DAG}", good)
    assert status == 200 and "model history" in history and f'<a href="/dags/{DAG}/runs/' in history
    assert '/plugin/retrain-report" target="_top">2025-01</a>' in history
    status, fleet, _ = get(stack, "/retrain/", good)
    assert status == 200 and f'href="/dags/{DAG}/plugin/retrain-history" target="_top">churn</a>' in fleet
    assert "last run failed in pull_snapshots" in fleet and "v1, trained on 2025-01" in fleet


def test_a_failed_run_gets_a_page_naming_its_task_error_and_log(deployment: tuple[AirflowStack, str]) -> None:
    stack, _ = deployment
    good = token(stack)
    status, page, headers = get(stack, f"/retrain/runs/{DAG}/{quote(stack.failed_run, safe='')}", good)
    assert status == 200 and "FAILED" in page and "failed on month 2025-02 before it recorded a decision" in page
    assert "<td>pull_snapshots</td>" in page and "unreadable or corrupt Parquet file" in page
    log = f"/dags/{DAG}/runs/{quote(stack.failed_run, safe='')}/tasks/pull_snapshots"
    assert f'<a href="{log}" target="_top">open its log</a>' in page
    assert "script-src 'sha256-" in headers["content-security-policy"]
    status, page, _ = get(stack, f"/retrain/runs/{DAG}/manual__never", good)
    assert status == 404 and "NOT FOUND" in page


def test_error_responses_are_short_and_never_sniffed(deployment: tuple[AirflowStack, str]) -> None:
    stack, _ = deployment
    good = token(stack)
    for path, expected in [
        (f"/retrain/runs/{DAG}/{'x' * 10_000}", 422),
        (f"/retrain/history/{'y' * 10_000}", 422),
        ("/retrain/history/retrain__nobody", 404),
    ]:
        status, body, headers = get(stack, path, good)
        assert status == expected and len(body) < 300, f"{path[:40]}: {status}, {len(body)} characters"
        assert "xxxxxxxxxx" not in body and "yyyyyyyyyy" not in body
        assert headers["x-content-type-options"] == "nosniff"
    status, _, headers = get(stack, f"/retrain/history/{DAG}")
    assert status == 401 and headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize(
    "path",
    [
        "/retrain/runs/retrain__churn/..%2F..%2Fchampion.json",
        "/retrain/runs/retrain__churn/..%2F..%2F..%2Fmodels%2Fchurn.toml",
        "/retrain/runs/..%2F..%2Fetc/passwd",
        "/retrain/history/..%2Fchurn",
        "/retrain/history/retrain__churn%2F..%2F..",
        "/retrain/runs/retrain__nobody/x",
        "/retrain/history/example_bash_operator",
    ],
)
def test_keys_from_the_url_never_escape_the_registry(deployment: tuple[AirflowStack, str], path: str) -> None:
    stack, _ = deployment
    status, body, _ = get(stack, path, token(stack))
    assert status in (404, 422), f"{path} answered {status}"
    assert '"version"' not in body and "[model]" not in body and "root:" not in body


def browser_available() -> None:
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not shutil.which(p)]
    if not missing:
        return
    unavailable(
        f"needs Debian's chromium and chromium-driver ({', '.join(missing)} absent)",
        required=f"{' and '.join(missing)} required: apt-get install chromium chromium-driver",
    )


@pytest.fixture
def browser(tmp_path: Path) -> Iterator:
    browser_available()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1400,1000",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def test_a_logged_in_user_sees_the_report_tab_and_the_history_in_the_ui(
    deployment: tuple[AirflowStack, str],
    browser,
    tmp_path: Path,  # noqa: ANN001 - selenium's driver
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as seen
    from selenium.webdriver.support.ui import WebDriverWait

    stack, run_id = deployment
    base = f"http://127.0.0.1:{stack.api_port}"
    wait = WebDriverWait(browser, 60)
    browser.get(f"{base}/")
    wait.until(seen.presence_of_element_located((By.NAME, "username"))).send_keys("admin")
    browser.find_element(By.NAME, "password").send_keys(stack.admin_password)
    browser.save_screenshot(str(tmp_path / "1-login.png"))
    browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait.until(lambda driver: "/auth/login" not in driver.current_url)

    browser.get(f"{base}/dags/{DAG}/runs/{run_id}/plugin/retrain-report")
    frame = wait.until(seen.presence_of_element_located((By.TAG_NAME, "iframe")))
    assert frame.get_attribute("src").endswith(f"/retrain/runs/{DAG}/{quote(run_id, safe='')}")
    browser.switch_to.frame(frame)
    decision = wait.until(seen.presence_of_element_located((By.CSS_SELECTOR, "#decision .outcome")))
    assert decision.text == "BOOTSTRAPPED"
    assert "no champion yet; first model" in browser.find_element(By.CSS_SELECTOR, "#decision .reason").text
    charts = browser.find_elements(By.CSS_SELECTOR, "img[src^='data:image/svg+xml']")
    assert charts and all(chart.size["width"] > 100 for chart in charts), "at least one chart is drawn"
    browser.switch_to.default_content()
    browser.save_screenshot(str(tmp_path / "2-run-report-tab.png"))

    # Settings wrap whole: a code element broken across lines hid its underscores under the next line.
    browser.set_window_size(700, 1000)
    browser.switch_to.frame(frame)
    settings = browser.find_elements(By.CSS_SELECTOR, "#data code.setting")
    assert len(settings) > 10 and any("min_ks_statistic" in s.text for s in settings)
    wrapped = [
        s.text for s in settings if browser.execute_script("return arguments[0].getClientRects().length", s) != 1
    ]
    assert wrapped == []
    browser.switch_to.default_content()
    browser.set_window_size(1400, 1000)

    failed = quote(stack.failed_run, safe="")
    browser.get(f"{base}/dags/{DAG}/runs/{failed}/plugin/retrain-report")
    frame = wait.until(seen.presence_of_element_located((By.TAG_NAME, "iframe")))
    browser.switch_to.frame(frame)
    assert wait.until(seen.presence_of_element_located((By.CSS_SELECTOR, ".outcome"))).text == "FAILED"
    assert "unreadable or corrupt Parquet file" in browser.find_element(By.ID, "failures").text
    browser.switch_to.default_content()
    browser.save_screenshot(str(tmp_path / "3-failed-run-tab.png"))

    # The fleet under Browse; a model's link moves the whole UI to its history tab, and a month there to
    # that run's report tab.
    browser.get(f"{base}/plugin/retrain-models")
    frame = wait.until(seen.presence_of_element_located((By.TAG_NAME, "iframe")))
    browser.switch_to.frame(frame)
    row = wait.until(seen.presence_of_element_located((By.CSS_SELECTOR, "#fleet tr[data-model='churn']")))
    assert "last run failed in pull_snapshots" in row.text and "attention" in row.get_attribute("class")
    browser.switch_to.default_content()
    browser.save_screenshot(str(tmp_path / "4-fleet.png"))
    browser.switch_to.frame(frame)
    row.find_element(By.LINK_TEXT, "churn").click()
    browser.switch_to.default_content()
    wait.until(lambda driver: driver.current_url.endswith(f"/dags/{DAG}/plugin/retrain-history"))
    frame = wait.until(seen.presence_of_element_located((By.CSS_SELECTOR, "iframe[src*='/retrain/history/']")))
    browser.switch_to.frame(frame)
    heading = wait.until(seen.presence_of_element_located((By.TAG_NAME, "h1")))
    assert "model history" in heading.text
    month = wait.until(seen.presence_of_element_located((By.LINK_TEXT, "2025-01")))
    browser.switch_to.default_content()
    browser.save_screenshot(str(tmp_path / "5-history.png"))
    browser.switch_to.frame(frame)
    month.click()
    browser.switch_to.default_content()
    wait.until(lambda driver: driver.current_url.endswith(f"/runs/{quote(run_id, safe='')}/plugin/retrain-report"))
    frame = wait.until(seen.presence_of_element_located((By.CSS_SELECTOR, "iframe[src*='/retrain/runs/']")))
    browser.switch_to.frame(frame)
    assert wait.until(seen.presence_of_element_located((By.CSS_SELECTOR, "#decision .outcome"))).text == "BOOTSTRAPPED"
    browser.switch_to.default_content()
    shots = sorted(p.name for p in tmp_path.glob("*.png"))
    assert shots == ["1-login.png", "2-run-report-tab.png", "3-failed-run-tab.png", "4-fleet.png", "5-history.png"]
