"""A search on a real two-node Ray cluster with PostgreSQL: via ``--address`` and via the Ray Jobs API.

The head offers the CPUs and no device; a second node offers the device resource and no CPU, so
quality work can only run on the head and measurements only on the device node. Both raylets share
this machine's hostname, so the checks use Ray node ids.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from db.models import Trial
from db.session import session_scope
from search.submit import CODE_PACKAGES
from tests.cluster_support import LocalCluster, hilnas, write_spec

DEVICE = "loopback-dev"
TRIALS = 6
DEVICE_MS = 100


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    cluster = LocalCluster().start(head_cpus=1)
    try:
        cluster.add_node("device", num_cpus=0, resources={f"hw:{DEVICE}": 1})
        yield cluster
    finally:
        cluster.stop()


def _spec(folder: Path, name: str) -> Path:
    return write_spec(
        folder,
        name=name,
        family="moo-benchmark",
        options={"problem": "zdt1", "n_var": 2, "device_ms": DEVICE_MS},
        sampler={"name": "random", "seed": 3},
        budget={"trials": TRIALS, "batch_size": 3, "max_concurrency": 2, "trial_timeout_s": 120},
        device=DEVICE,
    )


def _assert_placed_on_the_right_nodes(db_url: str, cluster: LocalCluster) -> None:
    with session_scope(db_url) as session:
        trials = list(session.scalars(select(Trial)))
    assert len(trials) == TRIALS and all(t.state == "complete" for t in trials), [t.error for t in trials]
    head, device = cluster.nodes["head"].node_id[:12], cluster.nodes["device"].node_id[:12]
    assert {t.node.split(":")[1] for t in trials} == {head}  # quality: the only node with CPUs
    assert {t.device_node.split(":")[1] for t in trials} == {device}  # latency: the node with hw:<device>
    assert all(t.metrics["device_ms"] >= DEVICE_MS for t in trials)


def test_search_run_with_address_uses_the_cluster(cluster: LocalCluster, postgres_url: str, tmp_path: Path) -> None:
    spec = _spec(tmp_path, "on-cluster")
    driver = hilnas("search", "run", str(spec), "--address", cluster.address, "--no-progress", db_url=postgres_url)
    output, _ = driver.communicate(timeout=300)
    assert driver.returncode == 0, output
    assert f"{TRIALS} trials, 0 failed" in output
    _assert_placed_on_the_right_nodes(postgres_url, cluster)


def test_search_submit_runs_the_search_as_a_ray_job(cluster: LocalCluster, postgres_url: str, tmp_path: Path) -> None:
    from ray.job_submission import JobStatus, JobSubmissionClient

    spec = _spec(tmp_path, "as-a-job")
    submit = hilnas("search", "submit", str(spec), "--address", cluster.jobs_address, db_url=postgres_url)
    output, _ = submit.communicate(timeout=120)
    assert submit.returncode == 0, output
    job_id = re.search(r"as Ray job (\S+)\.", output).group(1)
    assert f"ray job logs --address {cluster.jobs_address} --follow {job_id}" in output
    assert "hilnas search list --db-url postgresql+psycopg://postgres:***@" in output  # the password stays hidden

    client = JobSubmissionClient(cluster.jobs_address)
    deadline = time.monotonic() + 300
    while client.get_job_status(job_id) not in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED):
        assert time.monotonic() < deadline, client.get_job_logs(job_id)[-3000:]
        time.sleep(2)
    logs = client.get_job_logs(job_id)
    assert client.get_job_status(job_id) == JobStatus.SUCCEEDED, logs[-3000:]
    assert f"{TRIALS} trials, 0 failed" in logs
    runtime_env = client.get_job_info(job_id).runtime_env
    # The code travelled with the job: one uploaded package per hilnas package, plus the spec's folder.
    assert len(runtime_env["py_modules"]) == len(CODE_PACKAGES)
    assert all(m.startswith("gcs://") for m in runtime_env["py_modules"])
    assert runtime_env["working_dir"].startswith("gcs://")
    _assert_placed_on_the_right_nodes(postgres_url, cluster)


def test_search_submit_needs_the_jobs_address(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HILNAS_RAY_JOBS_ADDRESS", raising=False)
    submit = hilnas("search", "submit", str(_spec(tmp_path, "nowhere")), db_url=f"sqlite:///{tmp_path / 's.db'}")
    output, _ = submit.communicate(timeout=120)
    assert submit.returncode == 2
    assert (
        output.strip()
        == "error: Give the cluster's Ray Jobs API with --address http://head:8265 (or HILNAS_RAY_JOBS_ADDRESS)."
    )
