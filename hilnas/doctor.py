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


def run_doctor(db_url: str | None, console: Console) -> None:
    settings = get_settings()
    table = Table("check", "result", title="hilnas doctor")
    table.add_row("python", platform.python_version())
    for name in PACKAGES:
        table.add_row(name, _package_version(name))
    table.add_row("database", _check_database(db_url or settings.db_url))
    table.add_row("ray", _check_ray(settings.ray_address))
    table.add_row("default device", f"hw:{settings.device}")
    table.add_row("llm", settings.llm_model or "none configured (judge runs in offline mode)")
    console.print(table)


def _check_database(url: str) -> str:
    from db.migrate import current_revisions
    from db.session import get_engine, redact_url

    try:
        engine = get_engine(url)
    except UserError as exc:
        return f"[red]{exc.message}[/]"
    return f"{redact_url(url)} (schema {', '.join(sorted(current_revisions(engine)))})"


def _check_ray(address: str | None) -> str:
    if not address:
        return "local instance, started on demand (set HILNAS_RAY_ADDRESS for a cluster)"
    ray = importlib.import_module("ray")
    try:
        ray.init(address=address, logging_level="ERROR")
    except Exception as exc:  # any failure to join is the answer this check reports
        return f"[red]cannot join {address}: {str(exc).splitlines()[0]}[/]"
    try:
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        devices = sorted({k for n in nodes for k in n.get("Resources", {}) if k.startswith("hw:")})
        return f"{address}: {len(nodes)} live nodes, devices {', '.join(devices) or 'none'}"
    finally:
        ray.shutdown()
