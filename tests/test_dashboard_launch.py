"""The Launch page: only validated specs launch, and a launched search runs on a Ray head and fills the store."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from dashboard import launch
from db.session import get_engine
from hilnas.settings import get_settings
from search.queries import list_searches
from tests.cluster_support import free_ports

APP = str(Path(__file__).resolve().parent.parent / "dashboard" / "app.py")
BIN = Path(sys.executable).parent
FAMILY = "moo-benchmark"


@pytest.fixture
def ray_head() -> Iterator[dict[str, str]]:
    """A Ray head with the Jobs API on free ports of 127.0.0.1, stopped (only it) afterwards.

    Its own temp dir keeps other processes' ``ray.init()`` from finding and joining it. Token
    authentication is off: the head only listens on 127.0.0.1 and lives for one test, and every
    process that talks to it gets ``RAY_AUTH_MODE=disabled`` (see ``cluster_settings``).
    """
    gcs, jobs, agent, agent_grpc, runtime_env, metrics, node_manager, object_manager = free_ports(8)
    temp_dir = tempfile.mkdtemp(prefix="hnr", dir="/tmp")  # short: Ray's socket paths have a length limit
    environment = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "RAY_ADDRESS": "",
        "RAY_AUTH_MODE": "disabled",
    }
    command = [
        str(BIN / "ray"),
        "start",
        "--head",
        "--block",
        "--disable-usage-stats",
        f"--temp-dir={temp_dir}",
        "--node-ip-address=127.0.0.1",
        f"--port={gcs}",
        "--include-dashboard=true",
        "--dashboard-host=127.0.0.1",
        f"--dashboard-port={jobs}",
        f"--dashboard-agent-listen-port={agent}",
        f"--dashboard-agent-grpc-port={agent_grpc}",
        f"--runtime-env-agent-port={runtime_env}",
        f"--metrics-export-port={metrics}",
        f"--node-manager-port={node_manager}",
        f"--object-manager-port={object_manager}",
        "--num-cpus=2",
        '--resources={"hw:local-cpu": 1}',
    ]
    log_path = Path(temp_dir) / "head.log"
    with log_path.open("wb") as log:
        head = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=environment, start_new_session=True)
    address = f"http://127.0.0.1:{jobs}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{address}/api/version", timeout=2):
                    break
            except OSError:
                if head.poll() is not None:
                    pytest.fail(f"ray start failed: {log_path.read_text()[-2000:]}")
                time.sleep(1)
        else:
            pytest.fail(f"the Ray head did not come up: {log_path.read_text()[-2000:]}")
        yield {"jobs": address, "gcs": f"127.0.0.1:{gcs}"}
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(timeout=5)  # `ray start --block` is slow to wind down; nothing of it is kept
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
            head.wait()
        shutil.rmtree(temp_dir, ignore_errors=True)


def launch_page() -> AppTest:
    app = AppTest.from_file(APP, default_timeout=60).run()
    app.switch_page("views/launch.py").run()
    assert not app.exception, app.exception
    return app


def fill_tiny_search(app: AppTest, name: str, target: str) -> None:
    app.selectbox(key="launch.family").set_value(FAMILY).run()
    app.text_input(key="launch.name").set_value(name)
    app.number_input(key=f"launch.options.{FAMILY}.n_var").set_value(3)
    app.number_input(key="launch.sampler.population_size").set_value(4)
    app.number_input(key="launch.budget.trials").set_value(6)
    app.number_input(key="launch.budget.batch_size").set_value(3)
    app.number_input(key="launch.budget.max_concurrency").set_value(2)
    app.radio(key="launch.target").set_value(target).run()
    assert not app.exception, app.exception
    assert not app.error, [e.value for e in app.error]


def searches_named(db_url: str, name: str) -> list[tuple[str, int]]:
    """Status and finished-trial count of each search in the store with this name."""
    return [(s["status"], s["finished"]) for s in list_searches(db_url) if s["name"] == name]


def test_launch_form_rejects_invalid_input(monkeypatch: pytest.MonkeyPatch) -> None:
    app = launch_page()
    app.selectbox(key="launch.family").set_value(FAMILY).run()
    assert not app.error and not app.button(key="launch.submit").disabled
    app.text_area(key=f"launch.options_yaml.{FAMILY}").set_value("faults: [{kind: explode, trials: [1]}]").run()
    assert "Invalid options for family" in app.error[0].value
    assert app.button(key="launch.submit").disabled
    app.text_area(key=f"launch.options_yaml.{FAMILY}").set_value("").run()
    app.text_input(key="launch.name").set_value("").run()
    assert "is invalid: name" in app.error[0].value
    assert app.button(key="launch.submit").disabled


def test_launch_on_a_ray_head_fills_the_store(
    ray_head: dict[str, str], sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HILNAS_DB_URL", sqlite_url)
    monkeypatch.setenv("HILNAS_RAY_JOBS_ADDRESS", ray_head["jobs"])
    monkeypatch.setenv("HILNAS_RAY_ADDRESS", ray_head["gcs"])
    monkeypatch.setenv("HILNAS_ARTIFACT_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    get_settings.cache_clear()
    get_engine(sqlite_url)  # the store exists (migrated) before searches write to it concurrently

    # Through the Ray Jobs API.
    app = launch_page()
    fill_tiny_search(app, "from-dashboard-ray", "Ray cluster (Jobs API)")
    app.button(key="launch.submit").click().run()
    assert not app.exception, app.exception
    assert app.success, [e.value for e in app.error]
    (kind, job_id, _), *_ = app.session_state["launch.jobs"]
    deadline = time.monotonic() + 240
    while not launch.is_terminal((state := launch.ray_job_state(ray_head["jobs"], job_id))[0]):
        assert time.monotonic() < deadline, state[1]
        time.sleep(2)
    assert state[0] == "SUCCEEDED", state[1]
    assert searches_named(sqlite_url, "from-dashboard-ray") == [("finished", 6)], state[1]
    app.run()  # the job panel reports the job's status and its log
    assert any(job_id in m.value and "SUCCEEDED" in m.value for m in app.markdown)
    assert any("finished: 6 trials" in c.value for c in app.code)
    assert [j["search"] for j in launch.dashboard_jobs(ray_head["jobs"])] == ["from-dashboard-ray"]

    # On this machine, as a `hilnas search run` subprocess joining the same head.
    fill_tiny_search(app, "from-dashboard-local", "This machine")
    app.button(key="launch.submit").click().run()
    assert app.success, [e.value for e in app.error]
    (kind, job_id, name), *_ = app.session_state["launch.jobs"]
    assert (kind, name) == ("This machine", "from-dashboard-local")
    job = launch.local_job(job_id)
    assert job.process.wait(timeout=180) == 0, job.logs()
    assert searches_named(sqlite_url, "from-dashboard-local") == [("finished", 6)], job.logs()


def test_jobs_started_elsewhere_get_an_absolute_sqlite_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    assert launch.absolute_store_url("sqlite:///hilnas.db") == f"sqlite:///{tmp_path / 'hilnas.db'}"
    assert launch.absolute_store_url("sqlite:////data/x.db") == "sqlite:////data/x.db"
    postgres = "postgresql+psycopg://user:secret@db:5432/hilnas"
    assert launch.absolute_store_url(postgres) == postgres
