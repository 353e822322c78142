"""DevAI metrics (I, D, task solve rate) and judge-human alignment.

Labels are per task: requirement id -> True (satisfied), False (unsatisfied) or None (the judge
could not decide: an ``error`` verdict). An undecided requirement is left out of every denominator
and counted separately; it is never treated as unsatisfied.

- I: share of decided requirements that are satisfied.
- D: share of requirements (decided, with all direct prerequisites decided) that are satisfied with
  every direct prerequisite satisfied.
- solve rate: share of tasks with every requirement satisfied, over tasks with no undecided requirement.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.metrics import accuracy_score, cohen_kappa_score, precision_score, recall_score

from agents.judge.devai import DevAITask

Labels = Mapping[int, bool | None]


@dataclass(frozen=True)
class DevAIMetrics:
    independent: float  # I
    dependent: float  # D
    solve_rate: float
    n_requirements: int
    n_undecided: int
    n_tasks: int


def devai_metrics(tasks: Sequence[DevAITask], labels: Sequence[Labels]) -> DevAIMetrics:
    """I, D and solve rate over tasks with their labels (same order)."""
    met_i: list[bool] = []
    met_d: list[bool] = []
    solved: list[bool] = []
    undecided = 0
    for task, task_labels in zip(tasks, labels, strict=True):
        values = [task_labels.get(r.id) for r in task.requirements]
        undecided += sum(v is None for v in values)
        met_i.extend(v for v in values if v is not None)
        for r in task.requirements:
            chain = [task_labels.get(r.id)] + [task_labels.get(p) for p in r.prerequisites]
            if all(v is not None for v in chain):
                met_d.append(all(chain))
        if all(v is not None for v in values):
            solved.append(all(values))
    return DevAIMetrics(
        _share(met_i), _share(met_d), _share(solved), sum(len(t.requirements) for t in tasks), undecided, len(tasks)
    )


@dataclass(frozen=True)
class Alignment:
    agreement: float
    kappa: float
    precision: float  # of the judge's "satisfied", taking humans as the truth
    recall: float
    n_compared: int
    n_undecided: int  # judge errors left out of the comparison


def alignment(judge: Sequence[bool | None], human: Sequence[bool]) -> Alignment:
    """Agreement, Cohen's kappa, precision and recall of the judge against human labels (scikit-learn)."""
    pairs = [(j, h) for j, h in zip(judge, human, strict=True) if j is not None]
    if not pairs:
        return Alignment(math.nan, math.nan, math.nan, math.nan, 0, len(judge))
    predicted = np.array([j for j, _ in pairs], dtype=bool)
    truth = np.array([h for _, h in pairs], dtype=bool)
    # Kappa is undefined when both raters use a single, identical label; scikit-learn would warn and give nan.
    kappa = math.nan if len(set(predicted) | set(truth)) < 2 else float(cohen_kappa_score(truth, predicted))
    return Alignment(
        float(accuracy_score(truth, predicted)),
        kappa,
        float(precision_score(truth, predicted, zero_division=np.nan)),
        float(recall_score(truth, predicted, zero_division=np.nan)),
        len(pairs),
        len(judge) - len(pairs),
    )


def _share(values: list[bool]) -> float:
    return sum(values) / len(values) if values else math.nan
