"""Offline-mode judging on small workspaces built here, the reports, the store, and the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, select

from agents.judge.offline import OFFLINE_NOTE
from agents.judge.runs import judge_devai
from agents.judge.store import save_judgment
from db.models import JudgeRun, JudgeVerdict
from db.session import session_scope

TASK = {
    "name": "tiny_fashion_task",
    "query": "Classify Fashion-MNIST with a small CNN and report metrics.",
    "requirements": [
        {
            "requirement_id": 0,
            "prerequisites": [],
            "criteria": 'The "Fashion-MNIST" dataset is loaded in `src/data_loader.py`.',
        },
        {
            "requirement_id": 1,
            "prerequisites": [0],
            "criteria": 'Training progress is shown with "tqdm" in `src/train.py`.',
        },
        {"requirement_id": 2, "prerequisites": [], "criteria": "The model is saved as `models/saved_models/model.pt`."},
        {"requirement_id": 3, "prerequisites": [], "criteria": "The code is easy to read and maintain."},
        {"requirement_id": 4, "prerequisites": [1], "criteria": "Metrics are saved in `results/metrics.json`."},
        {"requirement_id": 5, "prerequisites": [], "criteria": "A training curve is saved as `results/curve.png`."},
    ],
    "preferences": [{"preference_id": 0, "criteria": "Be fast.", "satisfied": None}],
}
EXPECTED = {0: "satisfied", 1: "unsatisfied", 2: "unsatisfied", 3: "error", 4: "unsatisfied", 5: "unsatisfied"}


@pytest.fixture
def task_file(tmp_path: Path) -> Path:
    path = tmp_path / "task.json"
    path.write_text(json.dumps(TASK))
    return path


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    root = tmp_path / "workspace"
    (root / "src").mkdir(parents=True)
    (root / "results").mkdir()
    (root / "src" / "data_loader.py").write_text(
        "from torchvision import datasets\n\n\ndef load():\n"
        "    return datasets.FashionMNIST('data', download=True)  # <script>alert('x')</script>\n"
    )
    (root / "src" / "train.py").write_text("for epoch in range(3):\n    print(epoch)\n")
    (root / "results" / "metrics.json").write_text("{not json")
    (root / "results" / "curve.png").write_text("this is not an image")
    return root


def test_offline_verdicts_follow_the_evidence_and_say_their_mode(task_file: Path, workspace: Path) -> None:
    judgment = judge_devai(task_file, workspace, gateway=None)
    assert judgment.mode == "offline"
    assert {rid: v.verdict for rid, v in judgment.verdicts.items()} == EXPECTED
    for verdict in judgment.verdicts.values():
        assert verdict.decided_by == "offline"
        assert verdict.justification.startswith(OFFLINE_NOTE)
        assert verdict.llm_calls == 0
    loaded = judgment.verdicts[0].evidence[-1]
    assert (loaded.path, loaded.start_line, loaded.end_line) == ("src/data_loader.py", 5, 5)
    assert "FashionMNIST" in loaded.excerpt
    assert '"tqdm" is not mentioned' in judgment.verdicts[1].justification
    assert "`models/saved_models/model.pt` does not exist" in judgment.verdicts[2].justification
    assert "Cannot decide offline" in judgment.verdicts[3].justification
    assert "is not valid JSON" in judgment.verdicts[4].justification
    assert "not a readable image" in judgment.verdicts[5].justification


def test_skipping_requirements_whose_prerequisites_failed(task_file: Path, workspace: Path) -> None:
    judgment = judge_devai(task_file, workspace, gateway=None, skip_failed_prerequisites=True)
    skipped = judgment.verdicts[4]
    assert skipped.decided_by == "skipped" and skipped.verdict == "unsatisfied"
    assert "prerequisite R1 is not satisfied" in skipped.justification
    assert judgment.verdicts[0].decided_by == "offline"


def test_report_and_store_hold_the_same_judgment(db_url: str, task_file: Path, workspace: Path, tmp_path: Path) -> None:
    human = dict(TASK)
    human["requirements"] = [dict(r, satisfied=r["requirement_id"] in (0, 3)) for r in TASK["requirements"]]
    human_file = tmp_path / "human.json"
    human_file.write_text(json.dumps(human))
    judgment = judge_devai(task_file, workspace, gateway=None, human_path=human_file)
    saved = save_judgment(judgment, db_url, report_dir=tmp_path / "reports")

    markdown = saved.markdown_path.read_text()
    page = saved.html_path.read_text()
    assert "offline: deterministic evidence checks, no LLM used" in markdown
    assert "R1 --> R4" in markdown  # the prerequisite graph
    assert "agreement 1.000" in markdown  # R3 is an error and is left out; the other five agree
    assert "<script>" not in page and "&lt;script&gt;" in page  # workspace text stays text
    with session_scope(db_url) as session:
        run = session.get(JudgeRun, saved.run_id)
        assert (run.mode, run.kind, run.n_satisfied, run.n_unsatisfied, run.n_error) == ("offline", "devai", 1, 4, 1)
        assert run.report_markdown == markdown and run.report_html == page
        assert run.metrics["agreement"] == 1.0 and run.metrics["n_compared"] == 5
        assert run.requirement_set["requirements"][3]["satisfied"] is None
        rows = {v.requirement_id: v for v in session.scalars(select(JudgeVerdict).where(JudgeVerdict.run_id == run.id))}
        assert {rid: v.verdict for rid, v in rows.items()} == EXPECTED
        assert rows[0].evidence[-1]["path"] == "src/data_loader.py"
        assert rows[0].human_satisfied is True


def test_nothing_is_half_written_when_the_reports_cannot_be_saved(
    sqlite_url: str, task_file: Path, workspace: Path, tmp_path: Path
) -> None:
    judgment = judge_devai(task_file, workspace, gateway=None)
    blocker = tmp_path / "not_a_directory"
    blocker.write_text("")
    with pytest.raises(OSError):
        save_judgment(judgment, sqlite_url, report_dir=blocker / "reports")
    with session_scope(sqlite_url) as session:
        assert session.scalar(select(func.count()).select_from(JudgeRun)) == 0
        assert session.scalar(select(func.count()).select_from(JudgeVerdict)) == 0


def _hilnas(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HILNAS_LLM")}
    command = [sys.executable, "-c", "from hilnas.cli import main; main()", *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)


def test_cli_judges_a_devai_task_and_refuses_bad_input_in_one_sentence(task_file: Path, workspace: Path) -> None:
    done = _hilnas("judge", "devai", "--task", str(task_file), "--workspace", str(workspace))
    assert done.returncode == 0, done.stderr
    assert "offline mode" in done.stdout and "Judge run 1 stored" in done.stdout
    bad = task_file.parent / "cyclic.json"
    bad.write_text(
        json.dumps(
            {
                "requirements": [
                    {"requirement_id": 0, "prerequisites": [1], "criteria": "a"},
                    {"requirement_id": 1, "prerequisites": [0], "criteria": "b"},
                ]
            }
        )
    )
    refused = _hilnas("judge", "devai", "--task", str(bad), "--workspace", str(workspace))
    assert refused.returncode == 2
    assert "the prerequisites form a cycle" in refused.stderr and "Traceback" not in refused.stderr
