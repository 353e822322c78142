"""The alignment benchmark's plumbing on a tiny labelled set built here (not DevAI data, not a quality figure)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.judge_alignment import find_cases, main, run_mode, summarise


def _write_case(root: Path, name: str, loader_code: str, labels: list[bool]) -> None:
    task = {
        "name": name,
        "query": "Load Fashion-MNIST and save the model.",
        "requirements": [
            {
                "requirement_id": 0,
                "prerequisites": [],
                "criteria": 'The "Fashion-MNIST" dataset is loaded in `src/data.py`.',
            },
            {"requirement_id": 1, "prerequisites": [0], "criteria": "The model is saved as `models/model.pt`."},
        ],
    }
    (root / "tasks").mkdir(exist_ok=True)
    (root / "tasks" / f"{name}.json").write_text(json.dumps(task))
    workspace = root / "workspaces" / name / "src"
    workspace.mkdir(parents=True)
    (workspace / "data.py").write_text(loader_code)
    labelled = dict(
        task, requirements=[dict(r, satisfied=s) for r, s in zip(task["requirements"], labels, strict=True)]
    )
    (root / "human").mkdir(exist_ok=True)
    (root / "human" / f"{name}.json").write_text(json.dumps(labelled))


def test_benchmark_prints_alignment_by_mode(tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch) -> None:
    monkeypatch.delenv("HILNAS_LLM_MODEL", raising=False)
    # Offline verdicts: case a -> R0 satisfied, R1 unsatisfied (no model file); case b -> both unsatisfied.
    _write_case(tmp_path, "a", "from torchvision.datasets import FashionMNIST\n", [True, False])
    _write_case(tmp_path, "b", "import numpy\n", [True, False])
    (tmp_path / "tasks" / "c.json").write_text(json.dumps({"name": "c", "requirements": []}))  # no workspace: skipped
    code = main(
        [
            "--tasks",
            str(tmp_path / "tasks"),
            "--workspaces",
            str(tmp_path / "workspaces"),
            "--human",
            str(tmp_path / "human"),
        ]
    )
    out = capsys.readouterr().out
    assert code == 0 and "Judge–human alignment on 2 DevAI task(s)" in out
    cases = find_cases(tmp_path / "tasks", tmp_path / "workspaces", tmp_path / "human", None)
    assert [c.task.name for c in cases] == ["a", "b"]
    row = summarise("offline", run_mode(cases, None, skip=False, label="offline"))
    # Judge: a=(yes, no), b=(no, no); humans: (yes, no) twice. 3 of 4 agree; TP 1, FP 0, FN 1.
    assert (row["tasks"], row["requirements"], row["errors"]) == ("2", "4", "0")
    assert (row["agreement"], row["precision"], row["recall"]) == ("0.750", "1.000", "0.500")
    assert row["kappa"] == "0.500"  # po 0.75, pe 0.25*0.5 + 0.75*0.5 = 0.5
    assert (row["I judge"], row["I human"], row["D judge"], row["D human"]) == ("0.250", "0.500", "0.250", "0.500")
    assert row["cost / req"] == "0 (no LLM)"
    assert "only the offline mode runs" in out


def test_benchmark_says_so_when_nothing_can_be_judged(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    _write_case(tmp_path, "a", "x = 1\n", [True, True])
    (tmp_path / "no_labels").mkdir()
    code = main(
        [
            "--tasks",
            str(tmp_path / "tasks"),
            "--workspaces",
            str(tmp_path / "workspaces"),
            "--human",
            str(tmp_path / "no_labels"),
        ]
    )
    assert code == 1
    assert "nothing was judged" in capsys.readouterr().out
    assert main(["--tasks", str(tmp_path / "tasks"), "--workspaces", str(tmp_path / "nope"), "--human", "x"]) == 2
