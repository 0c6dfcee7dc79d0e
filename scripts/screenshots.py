"""The README's screenshots, taken from a running `make airflow` with headless Chromium (Selenium).

    make airflow &                      # after make demo
    .venv/bin/python scripts/screenshots.py --port 8080 --out docs/images

Needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as seen
    from selenium.webdriver.support.ui import WebDriverWait

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--dir", default="demo")
    parser.add_argument("--out", default=str(ROOT / "docs" / "images"))
    parser.add_argument("--dag", default="retrain__churn")
    parser.add_argument("--run", default=None, help="run id of the report tab (default: the fifth of the grid)")
    args = parser.parse_args()
    password = json.loads((Path(args.dir) / "airflow" / "passwords.json").read_text())["admin"]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    base = f"http://127.0.0.1:{args.port}"
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1500,1100", "--no-first-run"):
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tempfile.mkdtemp(prefix='retrain-chromium-')}")
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    wait = WebDriverWait(driver, 60)
    try:
        driver.get(f"{base}/")
        wait.until(seen.presence_of_element_located((By.NAME, "username"))).send_keys("admin")
        driver.find_element(By.NAME, "password").send_keys(password)
        driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        wait.until(lambda d: "/auth/login" not in d.current_url)
        run = args.run or "manual__" + _fifth_month(args.dir) + "-01T00:00:00+00:00"
        for name, path in (
            ("report-tab.png", f"/dags/{args.dag}/runs/{run}/plugin/retrain-report"),
            ("history.png", f"/dags/{args.dag}/plugin/retrain-history"),
            ("fleet.png", "/plugin/retrain-models"),
        ):
            driver.get(base + path)
            frame = wait.until(seen.presence_of_element_located((By.TAG_NAME, "iframe")))
            driver.switch_to.frame(frame)
            wait.until(seen.presence_of_element_located((By.TAG_NAME, "h1")))
            driver.switch_to.default_content()
            time.sleep(2)  # charts decode
            driver.save_screenshot(str(out / name))
            print(f"wrote {out / name}")
    finally:
        driver.quit()


def _fifth_month(demo: str) -> str:
    from retrain.snapshots import list_months

    months = list_months(str(Path(demo) / "churn" / "production"))
    return months[min(4, len(months) - 1)]


if __name__ == "__main__":
    main()
