"""The agent on a tiny backbone, in process: a goal no architecture can meet stops after the feasibility probe,
before any search; and the LLM planner's protocol against a scripted OpenAI-compatible server on 127.0.0.1.

The LLM test is a protocol test, not a planning-quality test: the server's replies are scripted. It checks that
tool calls are parsed and executed, that refused calls (unknown tool, malformed JSON, invalid arguments, over
budget, out of order) are stored with the reason, counted and sent back to the model, that the budgets hold
whatever the model asks, and that a round with nothing accepted falls back to the rule planner.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from openai_compatible_server import Scripted, openai_compatible_server
from rich.console import Console
from sqlalchemy import func, select

from agents.llm import LLMGateway
from agents.orchestrator.decisions import load
from agents.orchestrator.goal import parse_goal
from agents.orchestrator.orchestrator import Orchestrator
from agents.orchestrator.planners import LLMPlanner, RulePlanner
from db.models import Search
from db.session import session_scope
from tests.flash_support import write_corpus
from tests.orchestrator_support import tiny_goal

pytestmark = pytest.mark.usefixtures("ray_local")


@pytest.fixture(scope="module")
def corpus_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_corpus(tmp_path_factory.mktemp("corpus") / "corpus.txt")


def test_a_goal_no_architecture_can_meet_stops_after_the_probe_with_the_reason(
    corpus_file: Path, sqlite_url: str
) -> None:
    goal = parse_goal(tiny_goal(corpus_file, decode_max_ms=0.0001))
    console = Console(record=True, width=200)
    orchestrator = Orchestrator.start(goal, RulePlanner(), sqlite_url, console, judge_offline=True)
    state = orchestrator.execute()

    assert state.stopped.startswith("impossible: No architecture in the space can meet decode_ms <= 0.0001")
    assert "No search budget was spent." in state.stopped
    with session_scope(sqlite_url) as session:
        assert session.scalar(select(func.count()).select_from(Search)) == 0
    assert state.used["trials"] == 0 and state.used["measurements"] <= 1  # the probe's one architecture
    stages = {s["name"]: s["status"] for s in orchestrator.run.stages()}
    assert stages == {"backbone": "done", "probe": "done", "judge": "done"}
    assert orchestrator.run.status() == "finished"
    decisions = load(sqlite_url, orchestrator.run.run_id)
    assert [(d.planner, d.action) for d in decisions][-2:] == [("orchestrator", "stop"), ("orchestrator", "judge")]
    report = orchestrator.report_path.read_text()
    assert state.stopped in report and "no search ran, so there is no pipeline output to judge" in report


def test_llm_planner_protocol_tool_calls_refusals_budget_caps_and_fallback(corpus_file: Path, sqlite_url: str) -> None:
    goal = parse_goal(
        tiny_goal(
            corpus_file,
            decode_max_ms=1000.0,
            budgets={"trials": 3, "measurements": 9, "rounds": 2},
            export={"max_models": 1},
        )
    )
    with openai_compatible_server() as (url, server):
        server.script.extend(
            [
                # Round 1, first reply: an unknown tool and malformed JSON; nothing accepted, the model is asked again.
                Scripted(tool_calls=[("rm_rf", {"path": "/"}), ("search", '{"trials": 3')]),
                # Second reply: a valid calibration, and a search over the trial budget (3 left).
                Scripted(
                    tool_calls=[
                        ("calibrate", {"measurements": 6, "reason": "fit the latency model first"}),
                        ("search", {"trials": 50, "space": "full"}),
                    ]
                ),
                # Round 2: invalid arguments, an export with nothing verified, a narrowing with no front: three
                # refusals and nothing accepted, so the rule planner plans the round.
                Scripted(
                    tool_calls=[
                        ("verify", {"points": 0}),
                        ("export", {"models": 1}),
                        ("search", {"trials": 1, "space": "narrow"}),
                    ]
                ),
            ]
        )
        gateway = LLMGateway("openai/scripted-planner", base_url=url, backoff_s=0.01, timeout_s=10.0)
        console = Console(record=True, width=200)
        orchestrator = Orchestrator.start(goal, LLMPlanner(gateway), sqlite_url, console, judge_offline=True)
        state = orchestrator.execute()

    # The tools offered are exactly the stage functions, with the pydantic argument models as JSON schemas.
    tools = server.requests[0]["tools"]
    assert [t["function"]["name"] for t in tools] == ["calibrate", "search", "verify", "recalibrate", "export", "stop"]
    search_tool = next(t["function"] for t in tools if t["function"]["name"] == "search")
    assert search_tool["parameters"]["properties"]["space"]["enum"] == ["full", "narrow", "wide"]
    assert len(server.requests) == 3
    # Refusals went back to the model as tool results, with the reason.
    answers = [m["content"] for m in server.requests[1]["messages"] if m["role"] == "tool"]
    assert answers[0].startswith("refused: unknown tool 'rm_rf'")
    assert answers[1].startswith("refused: the arguments are not valid JSON")

    decisions = [d for d in load(sqlite_url, orchestrator.run.run_id) if d.round >= 1]
    summary = [(d.round, d.planner, d.action, d.accepted) for d in decisions]
    assert summary[:8] == [
        (1, "llm", "rm_rf", False),
        (1, "llm", "search", False),
        (1, "llm", "calibrate", True),
        (1, "llm", "search", False),
        (2, "llm", "verify", False),
        (2, "llm", "export", False),
        (2, "llm", "search", False),
        (2, "rule (fallback)", "stop", True),
    ]
    refusals = [d.rejection for d in decisions if not d.accepted]
    assert refusals[2] == "asks for 50 trials but 3 of the budget's 3 are left"
    assert refusals[3].startswith("invalid arguments: points: Input should be greater than or equal to 1")
    assert refusals[4] == "no verified candidate meets the constraints yet"
    assert refusals[5] == "there is no front to make a narrow space around yet: search the full space first"
    assert decisions[2].reason == "fit the latency model first" and decisions[1].arguments == {"raw": '{"trials": 3'}
    assert decisions[7].reason.startswith("budget spent: rounds (round 2 of 2 is the last)")

    # The accepted call ran as a stage; the budgets held whatever the model asked.
    stages = {s["name"]: s for s in orchestrator.run.stages()}
    assert stages["r1.2-calibrate"]["status"] == "done" and stages["r1.2-calibrate"]["output"]["measured"] >= 4
    assert state.used["trials"] == 0 and state.used["measurements"] <= 7  # the probe's one and calibrate's six
    with session_scope(sqlite_url) as session:
        assert session.scalar(select(func.count()).select_from(Search)) == 0
    report = orchestrator.report_path.read_text()
    assert "6 refused" in report and "unknown tool 'rm_rf'" in report
    assert json.loads(json.dumps(decisions[-1].state))["budgets"]["trials"]["used"] == 0
