"""The ``hilnas`` command: composes each part's sub-commands and turns ``UserError`` into exit 2."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.console import Console

from agents.cli import app as judge_app
from agents.orchestrator import cli as agent_cli
from dashboard.cli import app as dashboard_app
from hilnas.errors import USER_ERROR_EXIT_CODE, Interrupted, UserError
from latency_models.cli import app as latency_app
from search.cli import app as search_app
from search.families.edgetam.cli import app as edgetam_app
from search.families.mobilellm_flash.cli import app as flash_app
from search.families.quant_rotation.cli import app as quant_app
from search.scaling.cli import app as scaling_app

app = typer.Typer(
    help="hilnas: hardware-in-the-loop architecture search for on-device models.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(search_app, name="search")
app.add_typer(latency_app, name="latency")
app.add_typer(judge_app, name="judge")
app.add_typer(scaling_app, name="scaling")
app.add_typer(dashboard_app, name="dashboard")
app.add_typer(quant_app, name="quant")
app.add_typer(flash_app, name="flash")
app.add_typer(agent_cli.app, name="agent")
app.command("run")(agent_cli.run)
app.add_typer(edgetam_app, name="edgetam")
db_app = typer.Typer(help="The result store.", no_args_is_help=True)
app.add_typer(db_app, name="db")
console = Console()
errors = Console(stderr=True)


@db_app.command("upgrade")
def db_upgrade(db_url: Annotated[str | None, typer.Option("--db-url")] = None) -> None:
    """Apply pending schema migrations (they are also applied automatically on first use)."""
    from db.migrate import current_revisions, upgrade_to_head
    from db.session import get_engine, redact_url

    engine = get_engine(db_url, migrate=False)
    applied = upgrade_to_head(engine)
    state = "migrated to" if applied else "already at"
    console.print(f"{redact_url(str(engine.url))}: {state} {', '.join(sorted(current_revisions(engine)))}.")


@app.command("doctor")
def doctor(db_url: Annotated[str | None, typer.Option("--db-url")] = None) -> None:
    """Versions, the store, Ray and the measuring devices: what works here and what does not."""
    from hilnas.doctor import run_doctor

    if not run_doctor(db_url, console):
        raise typer.Exit(1)


@app.command("demo")
def demo(db_url: Annotated[str | None, typer.Option("--db-url")] = None) -> None:
    """The main job on embedded defaults (see README)."""
    from hilnas.demo import run_demo

    run_demo(db_url, console)


def main() -> None:
    """Entry point: a ``UserError`` anywhere becomes one sentence on stderr and exit code 2.

    Click itself (standalone mode) reports usage errors with exit code 2 and turns Ctrl-C outside
    a search into "Aborted!"; a search's own Ctrl-C arrives as ``Interrupted`` with a resume hint.
    """
    try:
        app()
    except UserError as exc:
        errors.print(f"error: {exc.message}", highlight=False, soft_wrap=True)
        sys.exit(USER_ERROR_EXIT_CODE)
    except Interrupted as exc:
        errors.print(exc.message, highlight=False, soft_wrap=True)
        sys.exit(130)
