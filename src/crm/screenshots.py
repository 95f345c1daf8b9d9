"""Screenshots of the three UIs, as docs/ shows them: `crm screenshots` (`make screenshots`) starts the
local services on the home's last run, captures the dashboard, the crm_daily graph in Airflow and
MLflow's registered models in headless Chromium, and stops them. test_local_ui captures the same
pages with these functions and checks what they show.

Needs Chromium and ChromeDriver (`make browser`) and selenium (the project's dev dependencies).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path

from crm import services
from crm.settings import Settings

# What each page shows once rendered: the dashboard's last section, the graph's tasks, the five models.
DASHBOARD_RENDERED = "Model monitoring alerts"
DAILY_GRAPH_TASKS = frozenset({"load_landing", "quality_gate_marts", "score_models", "publish_marts", "run_summary"})
REGISTERED_MODELS = ("crm_churn", "crm_segmentation", "crm_satisfaction", "crm_clv", "crm_recommendations")
WINDOW = (1400, 900)


class BrowserMissing(RuntimeError):
    """Chromium or ChromeDriver is not installed."""


class PageNotRendered(RuntimeError):
    """A page did not show what it should within the time allowed."""


def browser():
    """Headless Chromium through ChromeDriver."""
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        raise BrowserMissing("Chromium and ChromeDriver are not installed: `make browser` installs them (as root)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", f"--window-size={WINDOW[0]},{WINDOW[1]}"):
        options.add_argument(argument)
    options.binary_location = shutil.which("chromium")
    return webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)


def wait_until(condition: Callable[[], bool], timeout_s: float = 60) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.5)
    return False


def body_text(driver) -> str:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.TAG_NAME, "body").text


def graph_laid_out(driver, tasks: frozenset[str]) -> bool:
    """The graph view shows a visible node for each of ``tasks`` (React Flow shows nodes once laid out)."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By

    try:
        nodes = [node for node in driver.find_elements(By.CSS_SELECTOR, ".react-flow__node") if node.is_displayed()]
        shown = " ".join(node.text for node in nodes)
    except StaleElementReferenceException:
        return False  # re-rendered while we looked
    return all(task in shown for task in tasks)


def capture_dashboard(driver, endpoints: services.Endpoints, png: Path) -> str:
    """The dashboard, whole (a tall window); returns its text."""
    driver.set_window_size(*WINDOW)
    driver.get(endpoints.dashboard_url)
    if not wait_until(lambda: DASHBOARD_RENDERED in body_text(driver), 120):
        raise PageNotRendered(f"the dashboard did not render: {body_text(driver)[-1000:]}")
    # The page scrolls inside Streamlit's main block: grow the window until the whole page fits.
    measure = (
        "const main = document.querySelector('[data-testid=\"stMain\"], section.main');"
        "return Math.max(document.body.scrollHeight, main ? main.scrollHeight : 0);"
    )
    height = WINDOW[1]
    for _ in range(5):
        time.sleep(2)  # the charts draw (again, at the new size)
        needed = min(int(driver.execute_script(measure)) + 100, 8000)
        if needed <= height:
            break
        height = needed
        driver.set_window_size(WINDOW[0], height)
    driver.save_screenshot(str(png))
    return body_text(driver)


def capture_airflow_graph(driver, endpoints: services.Endpoints, png: Path) -> None:
    from selenium.webdriver.common.by import By

    driver.set_window_size(*WINDOW)
    # The UI keeps its login in the `_token` cookie; a token from the REST API logs the browser in.
    driver.get(f"{endpoints.airflow_url}/api/v2/monitor/health")
    driver.add_cookie({"name": "_token", "value": services.AirflowApi(endpoints).token, "path": "/"})
    driver.get(f"{endpoints.airflow_url}/dags/crm_daily")
    if not wait_until(lambda: "quality_gate_marts" in driver.page_source):
        raise PageNotRendered("the crm_daily page did not render its tasks")
    graph = driver.find_elements(By.CSS_SELECTOR, "[aria-label*='raph' i]")
    if graph:
        graph[0].click()
    if not wait_until(lambda: graph_laid_out(driver, DAILY_GRAPH_TASKS)):
        raise PageNotRendered("the crm_daily graph did not show its tasks")
    driver.save_screenshot(str(png))


def capture_mlflow_models(driver, endpoints: services.Endpoints, png: Path) -> None:
    from selenium.webdriver.common.by import By

    driver.set_window_size(*WINDOW)
    driver.get(f"{endpoints.mlflow_url}/#/models")
    if not wait_until(lambda: all(name in driver.page_source for name in REGISTERED_MODELS)):
        raise PageNotRendered("the MLflow models page did not list the five models")
    # MLflow's UI opens in its GenAI view with an assistant panel and a "what's new" dialog: the
    # browser keeps the choice of view, so close the dialog and the panel and switch to model
    # training, as a user does (clicked by script: an animation may still cover them).
    for close in driver.find_elements(By.CSS_SELECTOR, "button[aria-label='Close']"):  # the dialog, the panel
        driver.execute_script("arguments[0].click();", close)
    for switch in driver.find_elements(By.XPATH, "//*[normalize-space(text())='Model training']")[:1]:
        driver.execute_script("arguments[0].click();", switch)
    time.sleep(1)
    if not all(name in driver.page_source for name in REGISTERED_MODELS):
        raise PageNotRendered("the MLflow models page lost its models after switching to model training")
    driver.save_screenshot(str(png))


SCREENSHOTS = {
    "dashboard.png": capture_dashboard,
    "airflow_crm_daily.png": capture_airflow_graph,
    "mlflow_models.png": capture_mlflow_models,
}


def capture_all(settings: Settings, out_dir: Path) -> list[Path]:
    """Start the services on ``settings``' home, capture every page into ``out_dir``, stop them."""
    if services.running(settings):
        raise RuntimeError("the local services already run: `crm stop` first (the screenshots start their own)")
    out_dir.mkdir(parents=True, exist_ok=True)
    endpoints = services.start(settings)
    try:
        from selenium.common.exceptions import WebDriverException

        driver = browser()
        try:
            for name, capture in SCREENSHOTS.items():
                try:
                    capture(driver, endpoints, out_dir / name)
                except WebDriverException as error:  # its message carries the driver's stack, lines of it
                    raise PageNotRendered(f"{name}: {(error.msg or type(error).__name__).splitlines()[0]}") from error
        finally:
            driver.quit()
    finally:
        services.stop(settings)
    return [out_dir / name for name in SCREENSHOTS]
