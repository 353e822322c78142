"""``hilnas doctor`` reports versions, the store and Ray, and fails when the store is unreachable."""

from __future__ import annotations

import subprocess
import sys


def _doctor(db_url: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "hilnas", "doctor", "--db-url", db_url],
        capture_output=True,
        text=True,
        timeout=120,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"},
    )


def test_doctor_on_a_working_store(sqlite_url: str) -> None:
    result = _doctor(sqlite_url)
    assert result.returncode == 0, result.stderr
    assert "torch" in result.stdout and "2.13.0" in result.stdout
    assert "(schema 000" in result.stdout and "local instance" in result.stdout


def test_doctor_on_an_unreachable_store() -> None:
    result = _doctor("postgresql+psycopg://u:secret@127.0.0.1:1/none")
    assert result.returncode == 1
    assert "Cannot reach the database" in result.stdout and "secret" not in result.stdout
