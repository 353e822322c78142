"""``hilnas doctor``: what this installation can reach, each line a check with its answer."""

from __future__ import annotations

import importlib
import platform
from importlib.metadata import PackageNotFoundError, version

from rich.console import Console
from rich.table import Table

from hilnas.errors import UserError
from hilnas.settings import get_settings

PACKAGES = (
    "hilnas",
    "torch",
    "executorch",
    "ray",
    "optuna",
    "sqlalchemy",
    "alembic",
    "pydantic",
    "litellm",
    "streamlit",
    "plotly",
    "typer",
)


def _package_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def run_doctor(db_url: str | None, console: Console) -> bool:
    """Print every check; returns False when the store or the configured Ray cluster is unreachable."""
    settings = get_settings()
    table = Table("check", "result", title="hilnas doctor")
    table.add_row("python", platform.python_version())
    for name in PACKAGES:
        table.add_row(name, _package_version(name))
    database_ok, database = _check_database(db_url or settings.db_url)
    ray_ok, ray_status = _check_ray(settings.ray_address)
    table.add_row("database", database)
    table.add_row("ray", ray_status)
    table.add_row("default device", f"hw:{settings.device}")
    table.add_row("llm", settings.llm_model or "none configured (judge runs in offline mode)")
    console.print(table)
    return database_ok and ray_ok


def _check_database(url: str) -> tuple[bool, str]:
    from db.migrate import current_revisions
    from db.session import get_engine, redact_url

    try:
        engine = get_engine(url)
    except UserError as exc:
        return False, f"[red]{exc.message}[/]"
    return True, f"{redact_url(url)} (schema {', '.join(sorted(current_revisions(engine)))})"


def _check_ray(address: str | None) -> tuple[bool, str]:
    if not address:
        return True, "local instance, started on demand (set HILNAS_RAY_ADDRESS for a cluster)"
    ray = importlib.import_module("ray")
    try:
        ray.init(address=address, logging_level="ERROR")
    except Exception as exc:  # any failure to join is the answer this check reports
        return False, f"[red]cannot join {address}: {str(exc).splitlines()[0]}[/]"
    try:
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        devices = sorted({k for n in nodes for k in n.get("Resources", {}) if k.startswith("hw:")})
        return True, f"{address}: {len(nodes)} live nodes, devices {', '.join(devices) or 'none'}"
    finally:
        ray.shutdown()
