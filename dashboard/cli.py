"""``hilnas dashboard``: start the Streamlit app, bound to 127.0.0.1 unless told otherwise."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer

APP = Path(__file__).with_name("app.py")

app = typer.Typer(help="The Streamlit Pareto-frontier dashboard.", invoke_without_command=True)


@app.callback()
def dashboard(
    db_url: Annotated[str | None, typer.Option("--db-url", help="result store (default: HILNAS_DB_URL)")] = None,
    host: Annotated[str, typer.Option(help="address to bind; 0.0.0.0 exposes the dashboard to the network")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option(help="port to serve on")] = 8501,
) -> None:
    """Serve the dashboard until Ctrl-C; it only reads the store (and launches searches on request)."""
    from db.session import get_engine

    get_engine(db_url, migrate=False)  # an unreachable store is one sentence here, not a page of errors
    environment = dict(os.environ)
    if db_url:
        environment["HILNAS_DB_URL"] = db_url
    command = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(APP),
        "--server.address",
        host,
        "--server.port",
        str(port),
        "--server.headless",
        "true",
        "--browser.gatherUsageStats",
        "false",
        "--client.toolbarMode",
        "viewer",
    ]
    typer.echo(f"hilnas dashboard on http://{host}:{port} (Ctrl-C stops it)")
    server = subprocess.Popen(command, env=environment)
    try:
        code = server.wait()
    except KeyboardInterrupt:  # Ctrl-C reaches streamlit too; let it finish shutting down
        server.wait()
        code = 0
    raise typer.Exit(code)
