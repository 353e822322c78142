"""Submitting a search from the dashboard: on this machine, or to a Ray cluster via the Ray Jobs API.

The form's values only ever reach a command as a validated spec *file*: the command line itself is
fixed (``hilnas search run <spec file>``), run without a shell locally, and built from constants for
a Ray job. The store URL travels in the environment, never in argv, so a password does not show in
``ps``.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hilnas.errors import UserError
from search.spec import SearchSpec, parse_spec
from search.submit import absolute_store_url, jobs_client, submit_search, write_spec

SUBMITTED_BY = "hilnas-dashboard"
LOG_TAIL_BYTES = 20_000


def build_spec(data: dict[str, Any]) -> SearchSpec:
    """The form's values as a validated, resolved spec; any problem is a one-sentence ``UserError``."""
    return parse_spec(data, origin="from the launch form")


# --------------------------------------------------------------------------- local


@dataclass
class LocalJob:
    """A ``hilnas search run`` subprocess started by this dashboard process."""

    job_id: str
    spec_path: Path
    log_path: Path
    process: subprocess.Popen
    submitted_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def status(self) -> str:
        code = self.process.poll()
        if code is None:
            return "RUNNING"
        return "SUCCEEDED" if code == 0 else f"FAILED (exit code {code})"

    def logs(self) -> str:
        return _tail(self.log_path)

    def stop(self) -> None:
        """Ctrl-C for the driver: it records the search as interrupted, so it can be resumed."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)


_local_jobs: dict[str, LocalJob] = {}
_local_lock = threading.Lock()


def hilnas_executable() -> str:
    """The ``hilnas`` command of this environment (beside the running Python), else the one on PATH."""
    beside = Path(sys.executable).with_name("hilnas")
    if beside.is_file():
        return str(beside)
    found = shutil.which("hilnas")
    if found is None:
        raise UserError("The hilnas command is not installed in this environment; run `make install`.")
    return found


def launch_local(spec: SearchSpec, db_url: str, ray_address: str | None, base_dir: Path) -> LocalJob:
    """Run the search in a subprocess of this machine; its output goes to a log file beside the spec."""
    spec_path = write_spec(spec, base_dir)
    log_path = spec_path.with_name("output.log")
    command = [hilnas_executable(), "search", "run", str(spec_path), "--no-progress"]
    if ray_address:
        command += ["--address", ray_address]
    environment = {**os.environ, "HILNAS_DB_URL": absolute_store_url(db_url)}
    with log_path.open("wb") as log:
        process = subprocess.Popen(  # noqa: S603 - fixed argv, no shell; the form only wrote the spec file
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=environment,
            start_new_session=True,
        )
    job = LocalJob(f"local-{process.pid}", spec_path, log_path, process)
    with _local_lock:
        _local_jobs[job.job_id] = job
    return job


def local_job(job_id: str) -> LocalJob | None:
    with _local_lock:
        return _local_jobs.get(job_id)


def _tail(path: Path) -> str:
    if not path.exists():
        return ""
    with path.open("rb") as handle:
        handle.seek(max(0, path.stat().st_size - LOG_TAIL_BYTES))
        return handle.read().decode("utf-8", errors="replace")


# --------------------------------------------------------------------------- Ray Jobs API


def submit_ray_job(spec: SearchSpec, jobs_address: str, db_url: str, artifact_dir: Path, base_dir: Path) -> str:
    """Submit the search as a Ray job, with this checkout's code, the way ``hilnas search submit`` does."""
    return submit_search(
        spec, jobs_address, db_url, str(artifact_dir.resolve()), spec_dir=base_dir, submitted_by=SUBMITTED_BY
    )


def ray_job_state(jobs_address: str, job_id: str) -> tuple[str, str]:
    """The job's status and the tail of its log."""
    client = jobs_client(jobs_address)
    return str(client.get_job_status(job_id).value), client.get_job_logs(job_id)[-LOG_TAIL_BYTES:]


def dashboard_jobs(jobs_address: str) -> list[dict[str, Any]]:
    """Every job on the cluster that a hilnas dashboard submitted, newest first."""
    jobs = [j for j in jobs_client(jobs_address).list_jobs() if (j.metadata or {}).get("submitted_by") == SUBMITTED_BY]
    return [
        {
            "job": j.submission_id,
            "status": str(j.status.value),
            "search": j.metadata.get("search_name"),
            "family": j.metadata.get("family"),
            "started": j.start_time,
            "ended": j.end_time,
            "message": j.message,
        }
        for j in sorted(jobs, key=lambda j: j.start_time or 0, reverse=True)
    ]


def stop_ray_job(jobs_address: str, job_id: str) -> None:
    jobs_client(jobs_address).stop_job(job_id)


TERMINAL_STATUSES = ("SUCCEEDED", "FAILED", "STOPPED")


def is_terminal(status: str) -> bool:
    return status.split(" ", 1)[0] in TERMINAL_STATUSES
