"""A tiny goal for the agent's tests: the tiny MobileLLM-Flash setup of ``flash_support`` with small budgets."""

from __future__ import annotations

from pathlib import Path

from tests.flash_support import tiny_spec

SETTINGS = ("backbone", "backend", "protocol", "workload", "verify")


def tiny_goal(corpus: Path, decode_max_ms: float, **overrides: object) -> dict:
    """Generous budgets for a few rounds; nothing is exported (test_flash_pipeline covers the export stage)."""
    spec = tiny_spec(corpus)
    goal = {key: spec[key] for key in SETTINGS}
    goal |= {
        "name": "tiny-goal",
        "constraints": [{"metric": "decode_ms", "max": decode_max_ms}],
        "target": {"metric": "loss", "max": 100.0},
        "budgets": {"wall_time_s": 1800, "trials": 8, "measurements": 14, "rounds": 3},
        "calibration": {**spec["calibration"], "budget": 7},  # two unstable measurements on a busy machine still fit
        "search": {**spec["search"], "trials": 4},
        "export": {"max_models": 0},
    }
    goal.update(overrides)
    return goal
