"""A headless Chromium loads the running dashboard (``hilnas dashboard``) and screenshots the Pareto page."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageStat

from search.families.benchmarks.problems import evaluate_problem
from search.pareto import hypervolume, pareto_mask
from search.recorder import SearchRecorder, TrialOutcome
from search.spec import parse_spec

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
FRONT_BLUE = (99, 110, 250)  # plotly's first colour (#636EFA): the first search's points and front
N_TRIALS = 300
REFERENCE = [1.1, 12.0]


def seed_zdt1(db_url: str) -> list[int]:
    """A finished ZDT1 search written through the driver's own recorder (no Ray needed).

    Returns its front's trial numbers in the order the plot draws them (by f1).
    """
    spec = parse_spec(
        {
            "name": "zdt1-browser",
            "family": "moo-benchmark",
            "options": {"problem": "zdt1", "n_var": 3},
            "objectives": [{"name": "f1", "reference": REFERENCE[0]}, {"name": "f2", "reference": REFERENCE[1]}],
            "budget": {"trials": N_TRIALS},
        }
    )
    recorder = SearchRecorder.create_search(db_url, spec)
    decisions = np.random.default_rng(0).random((N_TRIALS, 3)) ** np.array([1.0, 3.0, 3.0])
    values = np.array([evaluate_problem("zdt1", x) for x in decisions])
    recorder.add_running([(i, {f"x{j}": float(v) for j, v in enumerate(x)}, None) for i, x in enumerate(decisions)])
    recorder.finish(
        [
            TrialOutcome(i, "complete", 1, values={"f1": f1, "f2": f2}, metrics={"f1": f1, "f2": f2})
            for i, (f1, f2) in enumerate(values.tolist())
        ]
    )
    recorder.set_reference_point(REFERENCE)
    for n in range(25, N_TRIALS + 1, 25):
        front = {int(i) for i in np.flatnonzero(pareto_mask(values[:n]))}
        recorder.update_front(front, hypervolume(values[:n], REFERENCE), n)
    recorder.set_status("finished")
    front = np.flatnonzero(pareto_mask(values))
    return [int(n) for n in front[np.argsort(values[front, 0])]]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def dashboard_server(sqlite_url: str, tmp_path: Path) -> Iterator[tuple[str, list[int]]]:
    """``hilnas dashboard`` on a free port of 127.0.0.1 serving a seeded store (and its front); stopped afterwards."""
    front = seed_zdt1(sqlite_url)
    port = free_port()
    log_path = tmp_path / "dashboard.log"
    hilnas = Path(sys.executable).with_name("hilnas")
    with log_path.open("wb") as log:
        server = subprocess.Popen(
            [str(hilnas), "dashboard", "--db-url", sqlite_url, "--port", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so the streamlit child stops with it
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{base}/_stcore/health", timeout=2) as response:
                    if response.read() == b"ok":
                        break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail(f"the dashboard did not come up: {log_path.read_text()}")
        yield base, front
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
    assert f"127.0.0.1:{port}" in log_path.read_text()


@pytest.mark.skipif(not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()), reason="needs Debian's chromium")
def test_chromium_renders_the_pareto_front_and_opens_a_clicked_trial(
    dashboard_server: tuple[str, list[int]], tmp_path: Path
) -> None:
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'chromium'}",
        "--window-size=1400,1300",
    ):
        options.add_argument(argument)
    base, front = dashboard_server
    screenshot = tmp_path / "pareto.png"
    browser = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        browser.get(f"{base}/pareto")
        points = ".js-plotly-plot .scatterlayer .point"
        WebDriverWait(browser, 90).until(lambda b: len(b.find_elements(By.CSS_SELECTOR, points)) >= N_TRIALS)
        assert "Pareto explorer" in browser.find_element(By.TAG_NAME, "h1").text
        time.sleep(1)  # let plotly finish its transition before the picture is taken
        browser.save_screenshot(str(screenshot))

        # Clicking the front's right-most point opens that trial (the default is the lowest-numbered one).
        front_points = browser.find_elements(
            By.CSS_SELECTOR, ".js-plotly-plot .scatterlayer .trace:nth-of-type(2) .point"
        )
        assert len(front_points) == len(front)
        assert front[-1] != min(front)
        ActionChains(browser).move_to_element(front_points[-1]).pause(0.5).click().perform()
        opened = f"Search #1 · trial {front[-1]} ·"
        WebDriverWait(browser, 60).until(lambda b: opened in b.find_element(By.TAG_NAME, "body").text)
    finally:
        browser.quit()

    image = Image.open(screenshot).convert("RGB")
    assert max(ImageStat.Stat(image.convert("L")).var) > 100, "the page is blank"
    pixels = np.asarray(image).reshape(-1, 3).astype(int)
    front_coloured = int((np.abs(pixels - FRONT_BLUE).sum(axis=1) < 40).sum())
    assert front_coloured > 500, f"only {front_coloured} pixels in the front's colour: the plot did not render"
    print(f"screenshot: {screenshot}")


def test_dashboard_command_reports_an_unreachable_store_in_one_sentence() -> None:
    hilnas = Path(sys.executable).with_name("hilnas")
    result = subprocess.run(
        [str(hilnas), "dashboard", "--db-url", f"postgresql+psycopg://nobody@127.0.0.1:{free_port()}/none"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("error: Cannot reach the database") and "Traceback" not in result.stderr
