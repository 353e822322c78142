"""The agent end to end through the CLI on a tiny backbone, killed mid-search and resumed: ``hilnas run GOAL`` is
SIGKILLed (with the Ray instance it started) while its search runs, ``hilnas run --resume ID`` finishes the run.
The search is resumed, not restarted (no trial lost or run twice), the decisions go on from where they stopped,
the rule planner stops on the met goal with the figures, and the judge's report and the run's report exist."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import yaml
from sqlalchemy import select

from agents.orchestrator.decisions import load
from db.models import JudgeRun, PipelineStage, Search, Trial
from db.session import dispose_engines, session_scope
from tests.cli_support import hilnas_process, wait_for_finished
from tests.flash_support import write_corpus
from tests.orchestrator_support import tiny_goal


def _complete_trials(db_url: str) -> dict[int, dict]:
    with session_scope(db_url) as session:
        return {t.number: t.metrics for t in session.scalars(select(Trial).where(Trial.state == "complete"))}


def test_a_killed_agent_run_resumes_its_search_and_stops_on_the_met_goal(tmp_path: Path) -> None:
    db_url = f"sqlite:///{tmp_path / 'agent.db'}"
    goal = tiny_goal(write_corpus(tmp_path / "corpus.txt"), decode_max_ms=1000.0)
    # Trials land one at a time and there are many of them, so a kill after the first leaves the search unfinished
    # (with four trials in batches of three, CI once saw the whole search land between two polls).
    goal["search"] |= {"trials": 12, "batch_size": 1, "max_concurrency": 1}
    goal["budgets"]["trials"] = 24
    goal_file = tmp_path / "goal.yaml"
    goal_file.write_text(yaml.safe_dump(goal))

    # The CLI and the Ray instance it starts share one session, so killpg is a whole-machine crash.
    agent = hilnas_process("run", str(goal_file), db_url=db_url, start_new_session=True)
    wait_for_finished(db_url, 1, agent)  # the first trial of the round-1 search
    os.killpg(agent.pid, signal.SIGKILL)
    agent.wait(timeout=30)
    dispose_engines()
    before = _complete_trials(db_url)
    assert 1 <= len(before) < goal["search"]["trials"], "the agent must be killed mid-search"
    decisions_before = load(db_url, 1)
    assert [d.action for d in decisions_before if d.round == 1] == ["calibrate", "search", "verify"]

    resumed = hilnas_process("run", "--resume", "1", db_url=db_url)
    output, _ = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, output
    assert "goal met: trial" in output and "Report:" in output

    dispose_engines()
    with session_scope(db_url) as session:
        searches = session.scalars(select(Search)).all()
        assert len(searches) == 1 and searches[0].status == "finished"  # resumed, not started again
        trials = session.scalars(select(Trial).where(Trial.search_id == searches[0].id)).all()
        stages = {s.name: s.status for s in session.scalars(select(PipelineStage))}
        judged = session.scalars(select(JudgeRun)).all()
    numbers = [t.number for t in trials]
    assert sorted(numbers) == list(range(goal["search"]["trials"]))  # each trial once
    assert all(t.state in ("complete", "invalid") for t in trials)  # the space may sample all-skip patterns
    assert all(next(t for t in trials if t.number == n).metrics == m for n, m in before.items())  # untouched

    decisions = load(db_url, 1)
    assert decisions[: len(decisions_before)] == decisions_before  # the log goes on, nothing planned twice
    assert [d.action for d in decisions if d.round == 1] == ["calibrate", "search", "verify"]
    stop = next(d for d in decisions if d.action == "stop")
    assert (stop.round, stop.planner) == (2, "rule") and stop.reason.startswith("goal met: trial ")
    assert "decode_ms" in stop.reason and "(measured)" in stop.reason
    assert all(d.reason for d in decisions) and all(d.state.get("budgets") for d in decisions if d.round >= 1)
    assert stages == {
        "backbone": "done",
        "probe": "done",
        "r1.0-calibrate": "done",
        "r1.1-search": "done",
        "r1.2-verify": "done",
        "judge": "done",
    }

    assert len(judged) == 1 and judged[0].search_id == searches[0].id and judged[0].mode == "offline"
    assert Path(judged[0].report_path).is_file()
    report = (tmp_path / "runs" / "agent-run-1" / "report.md").read_text()
    assert "outcome:** stopped: goal met" in report and "## Verified front" in report
    assert f"judge run {judged[0].id} (offline mode)" in report
