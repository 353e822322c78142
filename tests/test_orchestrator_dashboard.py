"""The dashboard's Agent runs page (Streamlit AppTest) on a store holding an agent run's plan and decision log,
written by the agent's own writers, on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
from pathlib import Path

import numpy as np
import plotly.io
import pytest
from streamlit.testing.v1 import AppTest

from agents.orchestrator import decisions as log
from agents.orchestrator.decisions import Decision
from dashboard import data
from hilnas.settings import get_settings
from search.staged import StagedRun

APP = str(Path(__file__).resolve().parent.parent / "dashboard" / "app.py")


def summary(hypervolume: list[dict], front: list[dict]) -> dict:
    """The part of ``State.summary()`` the page reads."""
    budgets = {"trials": {"limit": 8, "used": 4, "left": 4}, "measurements": {"limit": 14, "used": 9, "left": 5}}
    return {"budgets": budgets, "hypervolume": hypervolume, "verified_front": front}


@pytest.fixture
def agent_store(db_url: str, monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setenv("HILNAS_DB_URL", db_url)
    get_settings.cache_clear()
    run = StagedRun.create(
        db_url, "agent", "tiny-goal", {"goal": {"name": "tiny-goal"}, "planner": "llm"}, ["backbone"]
    )
    first = summary([{"round": 1, "value": 0.41, "candidates": 4}], [])
    front = [{"search_id": 1, "trial": 2, "loss": 4.57, "measured_ms": {"prefill": 0.69, "decode": 0.46}}]
    second = summary(
        [{"round": 1, "value": 0.41, "candidates": 4}, {"round": 2, "value": 0.47, "candidates": 8}], front
    )
    for decision in (
        Decision(
            1, "llm", "calibrate", {"measurements": 6}, "fit the latency model", True, None, "r1.0-calibrate", 0, first
        ),
        Decision(
            1, "llm", "search", {"trials": 50}, "more", False, "asks for 50 trials but 8 are left", None, 1, first
        ),
        Decision(
            2, "rule (fallback)", "stop", {"reason": "goal met"}, "goal met: trial 2", True, None, None, 0, second
        ),
    ):
        log.record(run, decision)
    run.set_status("finished")
    data.clear_caches()
    return run.run_id


def test_the_agent_page_shows_the_plan_the_decisions_with_reasons_and_the_front_per_round(agent_store: int) -> None:
    app = AppTest.from_file(APP, default_timeout=60).run()
    app.switch_page("views/agent_runs.py").run()
    assert not app.exception, app.exception
    assert app.title[0].value == "Agent runs"
    assert app.selectbox(key="agent.run").value == agent_store
    assert "Stopped: goal met: trial 2" in app.success[0].value
    plan = app.dataframe[1].value
    assert list(plan["name"]) == ["backbone", "r1.0-calibrate"]
    decisions = app.dataframe[2].value
    assert list(decisions["action"]) == ["calibrate", "search", "stop"]
    assert list(decisions["accepted"]) == [True, False, True]
    assert decisions["rejection"].iloc[1] == "asks for 50 trials but 8 are left"
    assert decisions["arguments"].iloc[0] == "measurements=6"
    charts = {e.proto.id: plotly.io.from_json(e.proto.spec) for e in app.get("plotly_chart")}
    hypervolume = next(figure for key, figure in charts.items() if "agent.hypervolume" in key)
    y = hypervolume.data[0].y  # plotly sends numeric arrays base64-encoded
    assert np.frombuffer(base64.b64decode(y["bdata"]), dtype=y["dtype"]).tolist() == [0.41, 0.47]
    assert any("agent.front" in key for key in charts)
