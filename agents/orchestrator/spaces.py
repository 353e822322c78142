"""Narrowing and widening the pruned space around a front: how the agent's ``search(space=...)`` is expressed.

A search spec may carry its own ``space``; these build one from the backbone's full pruned space
(``pruned_space``) restricted to a box around anchor candidates (the verified front, or the predicted
candidates nearest to feasibility): ``narrow`` reaches one step past the anchors' values in every
parameter and keeps only the attention modes they use, ``wide`` three steps and every mode.
"""

from __future__ import annotations

from typing import Any, Literal

from search.families.mobilellm_flash.space import ArchConfig, Workload, pruned_space
from search.space import CategoricalParam, IntParam, PerLayerParam, SearchSpace

SpaceName = Literal["full", "narrow", "wide"]
STEPS = {"narrow": 1, "wide": 3}


def space_around(
    backbone: ArchConfig, workload: Workload, anchors: list[dict[str, Any]], kind: SpaceName
) -> SearchSpace | None:
    """The part of the pruned space around the ``anchors``' parameters; None for ``full`` (or no anchors)."""
    if kind == "full" or not anchors:
        return None
    full = pruned_space(backbone, workload).params
    steps = STEPS[kind]
    params = {}
    for name, param in full.items():
        values = [v for anchor in anchors for v in _values(anchor[name])]
        if isinstance(param, PerLayerParam):
            params[name] = param.model_copy(update={"item": _box(param.item, values, steps, kind)})
        else:
            params[name] = _box(param, values, steps, kind)
    return SearchSpace(params=params)


def _values(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list) else [value]


def _box(param: IntParam | CategoricalParam, values: list[Any], steps: int, kind: SpaceName):  # noqa: ANN202
    if isinstance(param, IntParam):
        low = max(param.low, min(values) - steps * param.step)
        low = param.low + (low - param.low) // param.step * param.step  # stay on the parameter's grid
        high = min(param.high, max(values) + steps * param.step)
        return IntParam(low=low, high=max(low, high), step=param.step)
    if all(isinstance(c, int | float) and not isinstance(c, bool) for c in param.choices):
        ordered = sorted(param.choices)
        first = max(0, min(ordered.index(v) for v in values) - steps)
        last = min(len(ordered) - 1, max(ordered.index(v) for v in values) + steps)
        return CategoricalParam(choices=ordered[first : last + 1])
    if kind == "narrow":  # unordered choices (attention modes): keep those the anchors use
        return CategoricalParam(choices=[c for c in param.choices if c in values])
    return param
