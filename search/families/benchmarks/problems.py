"""ZDT1-3 (Zitzler, Deb & Thiele 2000) and DTLZ2 (Deb et al. 2002) as a searchable family.

Each problem has an analytic Pareto front, so the hypervolume a search reaches can be compared
with the true one. The family can also burn CPU per trial (``work_ms``) and inject faults
(``faults``), which is how the engine's speed, scaling and fault tolerance are exercised.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from search.family import Evaluation, Family, FamilyOptions, ObjectiveDefault, TrialContext
from search.pareto import hypervolume
from search.space import FloatParam, SearchSpace

Problem = Literal["zdt1", "zdt2", "zdt3", "dtlz2"]
_DEFAULT_N_VAR = {"zdt1": 30, "zdt2": 30, "zdt3": 30, "dtlz2": None}
REFERENCE = 1.1


class FaultInjection(BaseModel):
    """Make the first ``attempts`` attempts of the listed trial numbers raise, crash or hang.

    ``device_crash`` kills the device actor's process in the middle of the trial's measurement.
    """

    model_config = ConfigDict(extra="forbid")
    kind: Literal["raise", "crash", "hang", "device_crash"]
    trials: list[int] = Field(min_length=1)
    attempts: int = Field(1, ge=1)


class BenchmarkOptions(FamilyOptions):
    problem: Problem = "zdt1"
    n_var: int | None = Field(None, ge=2, le=1000)
    n_obj: int = Field(2, ge=2, le=10, description="objectives (DTLZ2 only; ZDT has two)")
    work_ms: float = Field(0.0, ge=0, description="CPU time burnt per evaluation")
    work_clock: Literal["wall", "process"] = Field(
        "wall",
        description="wall: burn until work_ms have passed (a fixed trial duration); process: until the process "
        "has used work_ms of CPU time (a fixed amount of work, so trials slow down when CPUs are shared)",
    )
    device_ms: float = Field(
        0.0, ge=0, description="time each candidate holds the device actor; > 0 adds a device_ms metric"
    )
    faults: list[FaultInjection] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check(self) -> BenchmarkOptions:
        if self.problem != "dtlz2" and self.n_obj != 2:
            raise ValueError("ZDT problems have exactly two objectives")
        if self.problem == "dtlz2" and self.n_var is not None and self.n_var < self.n_obj:
            raise ValueError("DTLZ2 needs n_var >= n_obj")
        return self

    @property
    def variables(self) -> int:
        if self.n_var is not None:
            return self.n_var
        default = _DEFAULT_N_VAR[self.problem]
        return default if default is not None else self.n_obj + 9  # DTLZ2's k = 10


def evaluate_problem(problem: Problem, x: np.ndarray, n_obj: int = 2) -> np.ndarray:
    """Objective values (all minimised) of decision vector ``x`` in [0, 1]^n."""
    if problem == "dtlz2":
        return _dtlz2(x, n_obj)
    f1 = x[0]
    g = 1.0 + 9.0 * float(np.sum(x[1:])) / (len(x) - 1)
    ratio = f1 / g
    if problem == "zdt1":
        h = 1.0 - math.sqrt(ratio)
    elif problem == "zdt2":
        h = 1.0 - ratio**2
    else:
        h = 1.0 - math.sqrt(ratio) - ratio * math.sin(10.0 * math.pi * f1)
    return np.array([f1, g * h])


def _dtlz2(x: np.ndarray, n_obj: int) -> np.ndarray:
    g = float(np.sum((x[n_obj - 1 :] - 0.5) ** 2))
    angles = x[: n_obj - 1] * math.pi / 2
    values = []
    for m in range(n_obj):
        value = 1.0 + g
        value *= float(np.prod(np.cos(angles[: n_obj - 1 - m])))
        if m > 0:
            value *= math.sin(angles[n_obj - 1 - m])
        values.append(value)
    return np.array(values)


def true_front(problem: Problem, n_obj: int = 2, n_points: int = 2001) -> np.ndarray:
    """Points sampled densely on the analytic Pareto front."""
    if problem == "dtlz2":
        if n_obj != 2:
            raise ValueError("sampled fronts are provided for two objectives; use true_hypervolume")
        theta = np.linspace(0, math.pi / 2, n_points)
        return np.stack([np.cos(theta), np.sin(theta)], axis=1)
    f1 = np.linspace(0.0, 1.0, n_points)
    if problem == "zdt1":
        f2 = 1.0 - np.sqrt(f1)
    elif problem == "zdt2":
        f2 = 1.0 - f1**2
    else:
        f2 = 1.0 - np.sqrt(f1) - f1 * np.sin(10.0 * math.pi * f1)
    points = np.stack([f1, f2], axis=1)
    keep = [i for i, p in enumerate(points) if not np.any(np.all(points <= p, axis=1) & np.any(points < p, axis=1))]
    return points[keep]


def true_hypervolume(problem: Problem, n_obj: int = 2) -> float:
    """The front's hypervolume against the reference point (1.1, ..., 1.1)."""
    if problem == "dtlz2":
        # Exact: the box minus the positive orthant of the unit ball.
        ball = math.pi ** (n_obj / 2) / math.gamma(n_obj / 2 + 1)
        return REFERENCE**n_obj - ball / 2**n_obj
    return hypervolume(true_front(problem), [REFERENCE, REFERENCE])


class MultiObjectiveBenchmark(Family):
    name = "moo-benchmark"
    description = "ZDT1-3 and DTLZ2 test problems with known Pareto fronts"
    Options = BenchmarkOptions

    options: BenchmarkOptions

    def default_space(self) -> SearchSpace:
        return SearchSpace(params={f"x{i}": FloatParam(low=0.0, high=1.0) for i in range(self.options.variables)})

    @property
    def needs_device(self) -> bool:
        return self.options.device_ms > 0

    def default_objectives(self) -> list[ObjectiveDefault]:
        objectives = [ObjectiveDefault(f"f{m + 1}", "minimize", REFERENCE) for m in range(self.options.n_obj)]
        if self.needs_device:
            objectives.append(ObjectiveDefault("device_ms", "minimize"))
        return objectives

    def measure(self, params: dict[str, Any], device: str, context: TrialContext) -> Evaluation:
        """Hold the device for ``device_ms`` and report when, so tests can check it measures one at a time."""
        started = time.time()
        if self._fault_due("device_crash", context):
            os._exit(14)
        time.sleep(self.options.device_ms / 1000.0)
        finished = time.time()
        return Evaluation(
            metrics={"device_ms": 1000.0 * (finished - started), "device_start": started, "device_end": finished}
        )

    def evaluate(self, params: dict[str, Any], context: TrialContext) -> Evaluation:
        self._inject_faults(context)
        window: dict[str, float] = {}
        if self.options.work_ms:
            clock = time.perf_counter if self.options.work_clock == "wall" else time.process_time
            window["work_start"] = time.time()
            _burn_cpu(self.options.work_ms / 1000.0, clock)
            window["work_end"] = time.time()
        x = np.array([params[f"x{i}"] for i in range(self.options.variables)], dtype=float)
        values = evaluate_problem(self.options.problem, x, self.options.n_obj)
        return Evaluation(metrics={**{f"f{m + 1}": float(v) for m, v in enumerate(values)}, **window})

    def _fault_due(self, kind: str, context: TrialContext) -> bool:
        return any(
            fault.kind == kind and context.trial_number in fault.trials and context.attempt <= fault.attempts
            for fault in self.options.faults
        )

    def _inject_faults(self, context: TrialContext) -> None:
        if self._fault_due("raise", context):
            raise RuntimeError(f"injected fault in trial {context.trial_number}, attempt {context.attempt}")
        if self._fault_due("crash", context):
            os._exit(13)
        if self._fault_due("hang", context):
            time.sleep(3600)


def _burn_cpu(seconds: float, clock: Callable[[], float]) -> None:
    deadline = clock() + seconds
    total = 0
    while clock() < deadline:
        total += sum(range(1000))
