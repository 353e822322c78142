"""Submitting a search to a Ray cluster through the Ray Jobs API, with this checkout's code.

The job runs ``python -m hilnas search run spec.json`` on the cluster's head. Its working directory
holds only the spec file, and hilnas's own packages travel as ``py_modules``, so the cluster runs
the code of the machine that submitted (the cluster's Python only needs hilnas's dependencies).
The store URL travels in the job's environment, never on its command line.
"""

from __future__ import annotations

import importlib.util
import json
import re
import tempfile
import uuid
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.engine import make_url

from hilnas.errors import UserError
from search.spec import SearchSpec

#: hilnas's top-level packages that the ``hilnas`` command imports.
CODE_PACKAGES = ("hilnas", "search", "db", "agents", "evaluators", "latency_models", "dashboard")
SPEC_FILE = "spec.json"
#: The only command a job runs; its working directory holds nothing but the spec file.
ENTRYPOINT = f"python -m hilnas search run {SPEC_FILE} --no-progress"
SUBMITTED_BY = "hilnas search submit"


def absolute_store_url(db_url: str) -> str:
    """The URL with a relative SQLite path made absolute, so a job started elsewhere writes to the same file."""
    url = make_url(db_url)
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return db_url
    return url.set(database=str(Path(url.database).resolve())).render_as_string(hide_password=False)


def write_spec(spec: SearchSpec, base_dir: Path) -> Path:
    """A fresh folder under ``base_dir`` holding only ``spec.json``; returns the file's path."""
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", spec.name)[:40].strip("-") or "search"
    folder = base_dir / f"{datetime.now(UTC):%Y%m%d-%H%M%S}-{slug}-{uuid.uuid4().hex[:6]}"
    folder.mkdir(parents=True)
    path = folder / SPEC_FILE
    path.write_text(json.dumps(spec.model_dump(mode="json"), indent=1), encoding="utf-8")
    return path


def jobs_client(address: str):  # noqa: ANN201 - ray.job_submission.JobSubmissionClient
    """A client for the cluster's Jobs API; token authentication follows Ray's own ``RAY_AUTH_*`` variables."""
    from ray.exceptions import AuthenticationError
    from ray.job_submission import JobSubmissionClient

    try:
        return JobSubmissionClient(address)
    except AuthenticationError as exc:
        raise UserError(
            f"The Ray cluster at {address} requires a token: run with RAY_AUTH_MODE=token "
            "and RAY_AUTH_TOKEN (or RAY_AUTH_TOKEN_PATH) set."
        ) from exc
    except (ConnectionError, RuntimeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"Cannot reach the Ray Jobs API at {address}: {first}.") from exc


def code_modules() -> list[str]:
    """The folders of hilnas's packages, as ``runtime_env`` ``py_modules`` wants them."""
    return [str(Path(importlib.util.find_spec(name).submodule_search_locations[0]).resolve()) for name in CODE_PACKAGES]


def submit_search(
    spec: SearchSpec,
    address: str,
    db_url: str,
    artifact_dir: str | None = None,
    spec_dir: Path | None = None,
    submitted_by: str = SUBMITTED_BY,
) -> str:
    """Submit ``spec`` as a Ray job to the Jobs API at ``address``; returns the job's id.

    The job's driver joins the cluster it runs on (``HILNAS_RAY_ADDRESS=auto``) and writes to
    ``db_url``, which the cluster must be able to reach (a SQLite file only works when the cluster
    shares this machine's filesystem).
    """
    spec_path = write_spec(spec, spec_dir or Path(tempfile.mkdtemp(prefix="hilnas-submit-")))
    environment = {"HILNAS_DB_URL": absolute_store_url(db_url), "HILNAS_RAY_ADDRESS": "auto"}
    if artifact_dir:
        environment["HILNAS_ARTIFACT_DIR"] = artifact_dir
    return jobs_client(address).submit_job(
        entrypoint=ENTRYPOINT,
        submission_id=f"hilnas-{spec_path.parent.name}",
        runtime_env={
            "working_dir": str(spec_path.parent),
            "py_modules": code_modules(),
            "excludes": ["__pycache__", "*.pyc"],
            "env_vars": environment,
        },
        metadata={"submitted_by": submitted_by, "search_name": spec.name, "family": spec.family},
    )


def is_sqlite(db_url: str) -> bool:
    return make_url(db_url).get_backend_name() == "sqlite"
