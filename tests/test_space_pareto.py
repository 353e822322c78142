"""Search spaces (conditions, per-layer lists, validation) and Pareto/hypervolume against known answers."""

from __future__ import annotations

import math

import numpy as np
import optuna
import pytest
from pydantic import ValidationError

from search.families.benchmarks.problems import evaluate_problem, true_front, true_hypervolume
from search.pareto import hypervolume, pareto_mask, to_minimization
from search.space import SearchSpace

SPACE = {
    "params": {
        "layers": {"type": "int", "low": 1, "high": 4},
        "attention": {
            "type": "per_layer",
            "length_from": "layers",
            "item": {"type": "categorical", "choices": ["full", "local", "skip"]},
        },
        "use_window": {"type": "categorical", "choices": [True, False]},
        "window": {
            "type": "int",
            "low": 16,
            "high": 256,
            "log": True,
            "condition": {"param": "use_window", "values": [True]},
        },
        "lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
    }
}


def test_sampling_respects_conditions_and_per_layer_lengths() -> None:
    space = SearchSpace.model_validate(SPACE)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3))
    for _ in range(30):
        trial = study.ask()
        values = space.sample(trial)
        assert len(values["attention"]) == values["layers"]
        assert ("window" in values) == values["use_window"]
        space.validate_values(values)
        assert set(space.flatten(values)) == set(trial.params)
        assert set(space.distributions(values)) == set(trial.params)
        study.tell(trial, 0.0)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"layers": 2, "attention": ["full"], "use_window": False, "lr": 1e-3}, "needs a list of 2"),
        ({"layers": 1, "attention": ["full"], "use_window": False, "lr": 1e-3, "window": 32}, "condition"),
        ({"layers": 1, "attention": ["full"], "use_window": True, "lr": 1e-3}, "'window' is missing"),
        ({"layers": 9, "attention": ["full"] * 9, "use_window": False, "lr": 1e-3}, "outside its range"),
        ({"layers": 1, "attention": ["global"], "use_window": False, "lr": 1e-3}, "outside its range"),
    ],
)
def test_values_outside_the_space_are_named(values: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SearchSpace.model_validate(SPACE).validate_values(values)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"x": {"type": "int", "low": 0, "high": 9, "log": True}}, "log-scale range needs low > 0"),
        ({"x": {"type": "int", "low": 1, "high": 9, "condition": {"param": "y", "values": [1]}}}, "declared before"),
        ({"x": {"type": "per_layer", "length_from": "n", "item": {"type": "int", "low": 1, "high": 2}}}, "int param"),
        ({"x": {"type": "categorical", "choices": [1, 1]}}, "distinct"),
    ],
)
def test_invalid_spaces_are_rejected_with_the_reason(params: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        SearchSpace.model_validate({"params": params})


def test_pareto_mask_and_hypervolume_on_hand_computed_points() -> None:
    points = np.array([[1.0, 4.0], [2.0, 2.0], [4.0, 1.0], [3.0, 3.0], [2.0, 2.0]])
    assert pareto_mask(points).tolist() == [True, True, True, False, True]
    # Against (5, 5) the staircase is 1x1 + 2x3 + 1x4 = 11; the duplicate and (3, 3) add nothing.
    assert hypervolume(points, [5.0, 5.0]) == pytest.approx(11.0)
    assert hypervolume(np.array([[6.0, 1.0]]), [5.0, 5.0]) == 0.0  # outside the reference box


def test_maximised_objectives_are_flipped() -> None:
    values = to_minimization(np.array([[0.9, 3.0]]), ["maximize", "minimize"])
    assert values.tolist() == [[-0.9, 3.0]]


def test_true_fronts_match_analytic_hypervolumes() -> None:
    # ZDT1: integral of (1.1 - (1 - sqrt f1)) over [0, 1] plus the 0.1 x 1.1 strip = 0.1 + 2/3 + 0.11.
    assert true_hypervolume("zdt1") == pytest.approx(0.1 + 2 / 3 + 0.11, abs=1e-3)
    assert true_hypervolume("zdt2") == pytest.approx(0.1 + 1 / 3 + 0.11, abs=1e-3)
    assert true_hypervolume("dtlz2", 2) == pytest.approx(1.21 - math.pi / 4)
    assert true_hypervolume("dtlz2", 3) == pytest.approx(1.331 - math.pi / 6)
    # Every sampled ZDT3 front point is attained by a decision vector with g = 1.
    for f1, f2 in true_front("zdt3")[::97]:
        assert evaluate_problem("zdt3", np.array([f1, 0.0, 0.0]))[1] == pytest.approx(f2)
