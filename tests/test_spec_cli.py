"""Specs: built-ins, YAML/TOML files, and bad input as one sentence with exit code 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from hilnas.errors import UserError
from search.spec import builtin_spec_names, load_spec


def _run(*args: str, db_url: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "hilnas", *args, "--db-url", db_url], capture_output=True, text=True, timeout=120
    )


def test_builtin_specs_load_and_resolve_family_defaults() -> None:
    assert {"zdt1", "zdt2", "zdt3", "dtlz2"} <= set(builtin_spec_names())
    spec = load_spec("dtlz2")
    assert [o.name for o in spec.objectives] == ["f1", "f2", "f3"]
    assert len(spec.space.params) == 12


def test_toml_spec_with_an_explicit_space(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text(
        """
name = "toml"
family = "moo-benchmark"
options = { problem = "zdt2", n_var = 2 }
[[objectives]]
name = "f1"
[[objectives]]
name = "f2"
[space.params.x0]
type = "float"
low = 0.0
high = 1.0
[space.params.x1]
type = "float"
low = 0.0
high = 0.5
"""
    )
    spec = load_spec(path)
    assert spec.space.params["x1"].high == 0.5


BAD_SPECS = {
    "malformed.yaml": ("name: [unclosed", "is not well-formed"),
    "unknown_family.yaml": ("name: x\nfamily: nope\n", "Unknown family 'nope'"),
    "zero_trials.yaml": ("name: x\nfamily: moo-benchmark\nbudget: {trials: 0}\n", "budget.trials"),
    "bad_option.yaml": ("name: x\nfamily: moo-benchmark\noptions: {problem: zdt9}\n", "Invalid options"),
    "unknown_metric.yaml": (
        "name: x\nfamily: moo-benchmark\nobjectives: [{name: accuracy}]\n",
        "reports no metric 'accuracy'",
    ),
    "bad_space.yaml": (
        "name: x\nfamily: moo-benchmark\nspace: {params: {x0: {type: float, low: 1, high: 0}}}\n",
        "must not exceed",
    ),
    "list.yaml": ("- a\n- b\n", "must be a mapping"),
    "extra_field.yaml": ("name: x\nfamily: moo-benchmark\ntrails: 3\n", "trails"),
}


@pytest.mark.parametrize("filename", sorted(BAD_SPECS))
def test_bad_spec_is_one_sentence_and_exit_2(tmp_path: Path, filename: str) -> None:
    text, expected = BAD_SPECS[filename]
    path = tmp_path / filename
    path.write_text(text)
    db_url = f"sqlite:///{tmp_path / 'store.db'}"
    result = _run("search", "run", str(path), "--no-progress", db_url=db_url)
    assert result.returncode == 2
    message = result.stderr.strip()
    assert message.startswith("error: ") and expected in message
    assert len(message.splitlines()) == 1 and "Traceback" not in message
    listing = _run("search", "list", db_url=db_url)
    assert listing.returncode == 0 and "moo-benchmark" not in listing.stdout  # nothing was stored


def test_missing_spec_file_names_the_builtins(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"built-ins: .*dtlz2, zdt1, zdt2, zdt3"):
        load_spec(tmp_path / "absent.yaml")


def test_export_rejects_unknown_format(tmp_path: Path) -> None:
    result = _run("search", "export", "1", "--format", "xlsx", db_url=f"sqlite:///{tmp_path / 's.db'}")
    assert result.returncode == 2 and "Unknown export format 'xlsx'" in result.stderr


def test_show_unknown_search_is_exit_2(tmp_path: Path) -> None:
    result = _run("search", "show", "42", db_url=f"sqlite:///{tmp_path / 's.db'}")
    assert result.returncode == 2 and "no search with id 42" in result.stderr


@pytest.mark.usefixtures("ray_local")
def test_run_list_show_and_export_round_trip(tmp_path: Path, sqlite_url: str) -> None:
    from search.driver import SearchDriver
    from search.spec import parse_spec

    spec = parse_spec(
        {
            "name": "cli",
            "family": "moo-benchmark",
            "options": {"problem": "zdt1", "n_var": 3},
            "budget": {"trials": 10, "max_concurrency": 2},
        }
    )
    search_id = SearchDriver.start(spec, sqlite_url).run().search_id
    listing = _run("search", "list", db_url=sqlite_url)
    assert "cli" in listing.stdout and "10/10" in listing.stdout
    shown = _run("search", "show", str(search_id), db_url=sqlite_url)
    assert "Pareto front" in shown.stdout and "finished" in shown.stdout
    for fmt in ("csv", "json", "parquet"):
        out = tmp_path / f"export.{fmt}"
        result = _run("search", "export", str(search_id), "--format", fmt, "-o", str(out), db_url=sqlite_url)
        assert result.returncode == 0, result.stderr
        assert out.stat().st_size > 0
    records = json.loads((tmp_path / "export.json").read_text())
    assert len(records) == 10 and {"value.f1", "value.f2", "param.x0", "is_pareto"} <= set(records[0])
    import pandas as pd

    assert len(pd.read_parquet(tmp_path / "export.parquet")) == 10
