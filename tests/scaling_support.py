"""Helpers shared by the scaling tests."""

from __future__ import annotations

import sys

import pytest

from hilnas.cli import main


def run_cli(args: list[str], monkeypatch: pytest.MonkeyPatch) -> int:
    """Run the real ``hilnas`` entry point in-process; its exit code (0 when it returns normally)."""
    monkeypatch.setattr(sys, "argv", ["hilnas", *args])
    try:
        main()
    except SystemExit as exited:
        return int(exited.code or 0)
    return 0
