"""The agent's rules without running a stage: the rule planner's decisions (and the figures in their reasons) on
hand-made states, what the orchestrator refuses whichever planner asks, and bad input on the command line
(one sentence, exit 2, nothing stored)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml
from sqlalchemy import func, select

from agents.orchestrator.decisions import Decision
from agents.orchestrator.goal import parse_goal
from agents.orchestrator.limits import RoundCheck
from agents.orchestrator.planners import RulePlanner
from agents.orchestrator.state import State
from db.models import AgentDecision, PipelineRun
from db.session import session_scope
from hilnas.errors import UserError

GOAL = {
    "name": "unit",
    "constraints": [{"metric": "decode_ms", "max": 1.0}],
    "target": {"metric": "loss", "max": 5.0},
    "budgets": {"wall_time_s": 600, "trials": 12, "measurements": 14, "rounds": 4},
    "calibration": {"budget": 6},
    "search": {"trials": 5},
    "verify": {"max_points": 3},
    "export": {"max_models": 2},
}


def candidate(number: int, loss: float, decode: float, measured: float | None = None) -> dict:
    """A search candidate as ``finished_candidates`` returns it (plus what a verification measured)."""
    predicted = {"prefill": 2.0, "decode": decode}
    found = {
        "number": number,
        "search_id": 1,
        "round": 1,
        "params": {"n_layers": 2},
        "loss": loss,
        "predicted": predicted,
        "trial_predicted": predicted,
    }
    if measured is not None:
        found["measured"] = {"prefill": 2.1, "decode": measured}
    return found


def state(round_: int = 2, calibrated: bool = True, used: dict | None = None, **fields: object) -> State:
    """A state after ``round_ - 1`` rounds; ``refit`` sets the last verification's refit reasons."""
    goal = parse_goal(dict(GOAL))
    decisions, outputs = [], {}
    if calibrated:
        decisions.append(Decision(1, "rule", "calibrate", {"measurements": 6}, "", True, stage="r1.0-calibrate"))
        outputs["r1.0-calibrate"] = {"device_measurements": 6}
    refit = fields.pop("refit", None)
    if refit is not None:
        decisions.append(Decision(1, "rule", "verify", {"points": 3}, "", True, stage="r1.2-verify"))
        outputs["r1.2-verify"] = {"errors": {"refit": refit, "errors_pct": {}, "stated_mape": {}}}
    spent = {"wall_time_s": 10.0, "trials": 5, "measurements": 7, "rounds": round_ - 1} | (used or {})
    result = State(goal, round_, spent, outputs, decisions)
    for name, value in fields.items():
        setattr(result, name, value)
    return result


def plan(s: State) -> list[Decision]:
    made: list[Decision] = []
    check = RoundCheck(s)

    def propose(planner: str, action: str, arguments: dict, reason: str) -> Decision:
        args, rejection = check.check(action, arguments)
        made.append(Decision(s.round, planner, action, arguments, reason, args is not None, rejection))
        return made[-1]

    RulePlanner().plan(s, propose)
    assert all(d.accepted for d in made), [d.rejection for d in made]
    return made


def actions(made: list[Decision]) -> list[tuple]:
    return [(d.action, {k: v for k, v in d.arguments.items() if k != "reason"}) for d in made]


def test_the_first_round_calibrates_searches_and_verifies_within_the_budgets() -> None:
    made = plan(state(round_=1, calibrated=False, used={"trials": 0, "measurements": 9, "rounds": 0}))
    # 14 - 9 = 5 measurements left: calibration takes them all (<= 6 asked by the goal), none is left to verify.
    assert actions(made) == [("calibrate", {"measurements": 5}), ("search", {"trials": 5, "space": "full"})]
    assert "measure 5 architectures" in made[0].reason


def test_a_met_goal_exports_the_verified_front_then_stops_with_the_figures() -> None:
    front = [candidate(3, 4.8, 0.9, measured=0.8), candidate(4, 5.2, 0.5, measured=0.45)]
    made = plan(state(candidates=front, verified_front=front))
    assert actions(made) == [("export", {"models": 2}), ("stop", {})]
    assert made[-1].reason == "goal met: trial 3 of search 1: loss 4.800 <= 5, decode_ms 0.8 <= 1 (measured)"


def test_a_latency_model_off_on_the_front_is_recalibrated_and_reverified() -> None:
    refit = {"decode": "decode: mean error 31.0% on the front, above 12.0%"}
    made = plan(state(refit=refit, candidates=[candidate(1, 5.5, 0.5, measured=0.7)], verified_front=[]))
    assert actions(made) == [("recalibrate", {"measurements": 4}), ("verify", {"points": 3})]
    assert "decode: mean error 31.0% on the front" in made[0].reason


def test_a_front_that_stopped_improving_narrows_the_space_around_it() -> None:
    front = [candidate(1, 5.5, 0.5, measured=0.5)]
    history = [{"round": 1, "value": 0.400, "candidates": 5}, {"round": 2, "value": 0.402, "candidates": 9}]
    made = plan(state(round_=3, candidates=front, verified_front=front, hypervolume=history))
    assert actions(made) == [("search", {"trials": 5, "space": "narrow"}), ("verify", {"points": 3})]
    assert "hypervolume 0.4 -> 0.402, +0.5%, below 2%" in made[0].reason
    assert "best verified loss 5.500 misses the target 5" in made[0].reason


def test_nothing_feasible_widens_around_near_misses_or_searches_everything_again() -> None:
    near = [candidate(1, 5.5, 1.1, measured=1.3), candidate(2, 5.4, 1.2)]  # trial 2: predicted 20% over
    made = plan(state(candidates=near, verified_front=[]))
    assert actions(made)[0] == ("search", {"trials": 5, "space": "wide"})
    assert "trial 2 of search 1 is predicted within 20% of them" in made[0].reason
    far = [candidate(2, 5.4, 3.0)]
    assert actions(plan(state(candidates=far, verified_front=[])))[0] == ("search", {"trials": 5, "space": "full"})


def test_a_spent_budget_or_the_last_round_stops_with_which_one() -> None:
    front = [candidate(1, 5.5, 0.5, measured=0.5)]
    made = plan(state(candidates=front, verified_front=front, used={"trials": 12}))
    assert actions(made) == [("export", {"models": 1}), ("stop", {})]
    assert made[-1].reason.startswith("budget spent: trials (12 of 12 used); best verified candidate: trial 1")
    last = plan(state(round_=4, candidates=front, verified_front=[]))
    assert actions(last) == [("stop", {})]
    assert last[0].reason.startswith("budget spent: rounds (round 4 of 4 is the last)")


def test_the_orchestrator_refuses_unknown_malformed_invalid_and_over_budget_calls() -> None:
    check = RoundCheck(state(round_=1, calibrated=False, used={"trials": 0, "measurements": 9, "rounds": 0}))
    assert check.check("rm_rf", {})[1].startswith("unknown tool 'rm_rf'")
    assert check.check("search", '{"trials": 3')[1].startswith("the arguments are not valid JSON")
    assert "space" in check.check("search", {"trials": 3, "space": "huge"})[1]
    assert check.check("search", {"trials": 3})[1] == "search needs a latency model: calibrate first"
    assert (
        check.check("calibrate", {"measurements": 6})[1]
        == "asks for 6 device measurements but 5 of the budget's 14 are left"
    )
    assert check.check("calibrate", {"measurements": 3})[1] == "a latency model needs at least 4 measured architectures"
    assert check.check("calibrate", {"measurements": 4})[1] is None
    # Accepted calls of a round count at once: two searches cannot share out more than is left together.
    assert check.check("search", {"trials": 8})[1] is None
    assert check.check("search", {"trials": 5})[1] == "asks for 5 trials but 4 of the budget's 12 are left"
    assert check.check("verify", {"points": 2})[1] == "asks for 2 device measurements but 1 of the budget's 14 are left"
    assert check.check("export", {"models": 3})[1] == "asks for 3 models; the goal exports at most 2"
    assert check.check("stop", {"reason": "enough"})[1] is None
    assert check.check("calibrate", {"measurements": 1})[1] == "this round already stopped the run"


# ---------------------------------------------------------------------------------------------- bad input


def run_cli(capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch, *args: str) -> tuple[int, str]:
    from hilnas.cli import main

    monkeypatch.setattr(sys, "argv", ["hilnas", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    return exit_info.value.code, capsys.readouterr().err


@pytest.mark.parametrize(
    ("goal", "message"),
    [
        (None, "There is no goal file"),
        ({"family": "edgetam"}, "does not support family 'edgetam' yet (supported: mobilellm-flash)"),
        ({"family": "gpt-9"}, "Unknown family 'gpt-9'"),
        ({"budgets": {"trials": 0}}, "budgets.trials: Input should be greater than 0"),
        ({"budgets": {"wall_time_s": -5}}, "budgets.wall_time_s: Input should be greater than 0"),
        ({"constraints": [{"metric": "energy_mj", "max": 3}]}, "names 'energy_mj'"),
        ({"colour": "blue"}, "colour: Extra inputs are not permitted"),
        ({"workload": {"decode_kv_len": 512}}, "needs 513 positions (prefill 128, KV 512 plus the new token)"),
    ],
)
def test_bad_goals_are_one_sentence_exit_2_and_store_nothing(
    goal: dict | None, message: str, tmp_path: Path, capsys, monkeypatch, sqlite_url: str
) -> None:
    path = tmp_path / "goal.yaml"
    if goal is not None:
        path.write_text(yaml.safe_dump(goal))
    code, err = run_cli(capsys, monkeypatch, "run", str(path), "--db-url", sqlite_url)
    assert code == 2 and message in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not Path(sqlite_url.removeprefix("sqlite:///")).exists()  # the store was not even opened


def test_resuming_an_unknown_run_or_an_unusable_planner_is_one_sentence(
    tmp_path: Path, capsys, monkeypatch, sqlite_url: str
) -> None:
    code, err = run_cli(capsys, monkeypatch, "run", "--resume", "7", "--db-url", sqlite_url)
    assert (code, err.strip()) == (2, "error: There is no agent run with id 7 in the store.")
    monkeypatch.delenv("HILNAS_LLM_MODEL", raising=False)
    code, err = run_cli(capsys, monkeypatch, "run", "flash-goal", "--planner", "llm", "--db-url", sqlite_url)
    assert code == 2 and "The LLM planner needs a model" in err
    code, err = run_cli(capsys, monkeypatch, "run", "--db-url", sqlite_url)
    assert code == 2 and "Give either a goal file" in err
    with session_scope(sqlite_url) as session:
        assert session.scalar(select(func.count()).select_from(PipelineRun)) == 0
        assert session.scalar(select(func.count()).select_from(AgentDecision)) == 0


def test_the_built_in_goal_is_valid() -> None:
    from agents.orchestrator.goal import load_goal

    goal = load_goal("flash-goal")
    assert goal.describe() == "decode_ms <= 20, loss <= 5.6 at prefill 128 / KV 511 on hw:local-cpu"
    with pytest.raises(UserError, match="no built-in one of that name"):
        load_goal("nope")
