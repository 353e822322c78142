"""The ``hilnas`` command: composes each part's sub-commands and turns ``UserError`` into exit 2."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.console import Console

from agents.cli import app as judge_app
from hilnas.errors import USER_ERROR_EXIT_CODE, Interrupted, UserError
from search.cli import app as search_app

app = typer.Typer(
    help="hilnas: hardware-in-the-loop architecture search for on-device models.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(search_app, name="search")
app.add_typer(judge_app, name="judge")
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
    """Entry point: a ``UserError`` anywhere becomes one sentence on stderr and exit code 2."""
    try:
        exit_code = app(standalone_mode=False)  # click returns, rather than raises, a command's Exit code
    except UserError as exc:
        errors.print(f"error: {exc.message}", highlight=False, soft_wrap=True)
        sys.exit(USER_ERROR_EXIT_CODE)
    except Interrupted as exc:
        errors.print(exc.message, highlight=False, soft_wrap=True)
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        errors.print("Aborted.")
        sys.exit(130)
    except KeyboardInterrupt:
        errors.print("Interrupted.")
        sys.exit(130)
    except Exception as exc:  # click's own usage errors
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        raise
    if isinstance(exit_code, int) and exit_code:
        sys.exit(exit_code)
