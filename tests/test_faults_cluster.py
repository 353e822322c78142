"""Faults a cluster deals out, on a real two-node Ray cluster with PostgreSQL: a worker process killed
mid-trial, the search's driver killed and resumed, the node holding a device killed.

Each search runs as ``hilnas search run --address`` in a subprocess, as a user would run it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from sqlalchemy import select

from db.models import Search, Trial
from db.session import dispose_engines, session_scope
from search.study import NUMBER_ATTR, optuna_storage
from tests.cluster_support import LocalCluster, hilnas, write_spec

FINISHED = ("complete", "failed", "invalid")


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    cluster = LocalCluster().start(head_cpus=1)
    try:
        yield cluster
    finally:
        cluster.stop()


def _trials(db_url: str) -> list[Trial]:
    with session_scope(db_url) as session:
        return list(session.scalars(select(Trial).order_by(Trial.number)))


def _wait_until(condition, process: subprocess.Popen, timeout: float = 240) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, process.stdout.read()
        assert time.monotonic() < deadline, "timed out waiting for the search"
        time.sleep(0.3)


def _finished_count(db_url: str, states: tuple[str, ...] = FINISHED) -> int:
    try:
        return sum(t.state in states for t in _trials(db_url))
    except Exception:  # the driver may still be creating the schema
        dispose_engines()
        return 0


def _run(cluster: LocalCluster, spec: Path, db_url: str) -> subprocess.Popen:
    return hilnas("search", "run", str(spec), "--address", cluster.address, "--no-progress", db_url=db_url)


def test_a_worker_killed_mid_trial_is_retried(cluster: LocalCluster, postgres_url: str, tmp_path: Path) -> None:
    from ray.util.state import list_tasks

    spec = write_spec(
        tmp_path,
        name="killed-worker",
        family="moo-benchmark",
        options={"problem": "zdt1", "n_var": 2, "work_ms": 2500},
        sampler={"name": "random", "seed": 0},
        budget={"trials": 3, "batch_size": 3, "max_concurrency": 1, "max_retries": 1},
    )
    driver = _run(cluster, spec, postgres_url)
    running: list = []

    def a_quality_task_runs() -> bool:
        filters = [("name", "=", "evaluate_quality"), ("state", "=", "RUNNING")]
        running[:] = list_tasks(address=cluster.jobs_address, filters=filters, raise_on_missing_output=False)
        return bool(running and running[0].worker_pid)

    _wait_until(a_quality_task_runs, driver)
    os.kill(running[0].worker_pid, signal.SIGKILL)  # the worker process itself, from outside, mid-trial
    output, _ = driver.communicate(timeout=300)
    assert driver.returncode == 0, output
    trials = _trials(postgres_url)
    assert [t.state for t in trials] == ["complete"] * 3
    assert sorted(t.attempts for t in trials) == [1, 1, 2]  # exactly the killed trial ran twice


def test_a_killed_driver_resumes_on_the_cluster(cluster: LocalCluster, postgres_url: str, tmp_path: Path) -> None:
    trials = 12
    spec = write_spec(
        tmp_path,
        name="killed-driver",
        family="moo-benchmark",
        options={"problem": "zdt1", "n_var": 2, "work_ms": 400},
        sampler={"name": "nsga2", "seed": 1, "population_size": 4},
        budget={"trials": trials, "batch_size": 2, "max_concurrency": 1},
    )
    driver = _run(cluster, spec, postgres_url)
    _wait_until(lambda: _finished_count(postgres_url) >= 3, driver)
    driver.kill()  # SIGKILL to the driver alone: the cluster, and its in-flight work, carry on without it
    driver.communicate(timeout=30)
    before = {t.number: t.values for t in _trials(postgres_url) if t.state in FINISHED}
    assert 3 <= len(before) < trials, "the driver must be killed mid-run"

    resumed = hilnas("search", "resume", "1", "--address", cluster.address, "--no-progress", db_url=postgres_url)
    output, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, output
    rows = _trials(postgres_url)
    assert [t.number for t in rows] == list(range(trials)) and all(t.state == "complete" for t in rows)
    assert all({t.number: t.values for t in rows}[n] == values for n, values in before.items())
    with session_scope(postgres_url) as session:
        assert session.get(Search, 1).status == "finished"
    mirror = optuna.load_study(study_name="hilnas-search-1", storage=optuna_storage(postgres_url))
    assert sorted(t.user_attrs[NUMBER_ATTR] for t in mirror.get_trials()) == list(range(trials))


def test_a_killed_device_node_stores_no_wrong_numbers(cluster: LocalCluster, postgres_url: str, tmp_path: Path) -> None:
    """Measurements in flight fail, later ones wait for the device until the trial timeout, each with a reason."""
    node = cluster.add_node("edge", num_cpus=0, resources={"hw:edge-dev": 1})
    spec = write_spec(
        tmp_path,
        name="killed-device-node",
        family="moo-benchmark",
        options={"problem": "zdt1", "n_var": 2, "device_ms": 1500},
        sampler={"name": "random", "seed": 0},
        budget={"trials": 6, "batch_size": 2, "max_concurrency": 2, "trial_timeout_s": 8, "max_retries": 0},
        device="edge-dev",
    )
    driver = _run(cluster, spec, postgres_url)
    # Two measured trials before the node goes: on a loaded machine an early trial can time out instead (seen in CI).
    _wait_until(lambda: _finished_count(postgres_url, ("complete",)) >= 2, driver)
    cluster.kill_node("edge")
    output, _ = driver.communicate(timeout=300)
    assert driver.returncode == 0, output  # the search ends with its budget, the lost trials failed

    trials = _trials(postgres_url)
    assert len(trials) == 6 and all(t.state in FINISHED for t in trials)
    complete = [t for t in trials if t.state == "complete"]
    failed = [t for t in trials if t.state == "failed"]
    assert len(complete) >= 2 and failed
    for trial in complete:  # every stored number was measured on the device's node
        assert trial.device_node.split(":")[1] == node.node_id[:12]
        assert trial.metrics["device_ms"] >= 1500
    for trial in failed:
        assert trial.values is None and trial.device_node is None
        assert "stopped mid-measurement" in trial.error or "no live Ray node offers 'hw:edge-dev'" in trial.error
    assert any("no live Ray node offers 'hw:edge-dev'" in t.error for t in failed)  # the waiting ones say why
