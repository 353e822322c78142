"""Search spaces: validated pydantic descriptions that map onto Optuna distributions.

A space is an ordered mapping of named parameters. A parameter may be conditional (only sampled
when an earlier parameter has one of the given values) and a ``per_layer`` parameter expands into
one parameter per layer, ``name_0 ... name_{n-1}``, with ``n`` taken from an earlier int parameter.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import optuna
from pydantic import BaseModel, ConfigDict, Field, model_validator

Choice = str | int | float | bool | None


class Condition(BaseModel):
    """Sample the parameter only when ``param`` took one of ``values``."""

    model_config = ConfigDict(extra="forbid")
    param: str
    values: list[Choice] = Field(min_length=1)


class _ParamBase(BaseModel):
    model_config = ConfigDict(extra="forbid")
    condition: Condition | None = None
    description: str | None = None


class IntParam(_ParamBase):
    type: Literal["int"] = "int"
    low: int
    high: int
    step: int = 1
    log: bool = False

    @model_validator(mode="after")
    def _check(self) -> IntParam:
        _check_range(self.low, self.high, self.log)
        if self.step < 1 or (self.log and self.step != 1):
            raise ValueError("step must be >= 1, and exactly 1 on a log scale")
        return self

    def distribution(self) -> optuna.distributions.BaseDistribution:
        return optuna.distributions.IntDistribution(self.low, self.high, log=self.log, step=self.step)

    def contains(self, value: Any) -> bool:
        return (
            isinstance(value, int)
            and not isinstance(value, bool)
            and self.low <= value <= self.high
            and (value - self.low) % self.step == 0
        )


class FloatParam(_ParamBase):
    type: Literal["float"] = "float"
    low: float
    high: float
    step: float | None = None
    log: bool = False

    @model_validator(mode="after")
    def _check(self) -> FloatParam:
        _check_range(self.low, self.high, self.log)
        if self.step is not None and (self.step <= 0 or self.log):
            raise ValueError("step must be positive and cannot be combined with a log scale")
        return self

    def distribution(self) -> optuna.distributions.BaseDistribution:
        return optuna.distributions.FloatDistribution(self.low, self.high, log=self.log, step=self.step)

    def contains(self, value: Any) -> bool:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and self.low <= value <= self.high


class CategoricalParam(_ParamBase):
    type: Literal["categorical"] = "categorical"
    choices: list[Choice] = Field(min_length=1)

    @model_validator(mode="after")
    def _check(self) -> CategoricalParam:
        if len(set(map(repr, self.choices))) != len(self.choices):
            raise ValueError("choices must be distinct")
        return self

    def distribution(self) -> optuna.distributions.BaseDistribution:
        return optuna.distributions.CategoricalDistribution(self.choices)

    def contains(self, value: Any) -> bool:
        return any(value == c and type(value) is type(c) for c in self.choices)


ScalarParam = Annotated[IntParam | FloatParam | CategoricalParam, Field(discriminator="type")]


class PerLayerParam(_ParamBase):
    """One value per layer; the layer count is the value of the int parameter ``length_from``."""

    type: Literal["per_layer"] = "per_layer"
    length_from: str
    item: ScalarParam

    @model_validator(mode="after")
    def _check(self) -> PerLayerParam:
        if self.item.condition is not None:
            raise ValueError("the item of a per_layer parameter cannot have its own condition")
        return self


Param = Annotated[IntParam | FloatParam | CategoricalParam | PerLayerParam, Field(discriminator="type")]


def _check_range(low: float, high: float, log: bool) -> None:
    if low > high:
        raise ValueError(f"low ({low}) must not exceed high ({high})")
    if log and low <= 0:
        raise ValueError("a log-scale range needs low > 0")


class SearchSpace(BaseModel):
    """An ordered set of parameters; order matters because conditions refer to earlier parameters."""

    model_config = ConfigDict(extra="forbid")
    params: dict[str, Param] = Field(min_length=1)

    @model_validator(mode="after")
    def _check_references(self) -> SearchSpace:
        seen: dict[str, Param] = {}
        for name, param in self.params.items():
            if param.condition is not None and param.condition.param not in seen:
                raise ValueError(
                    f"parameter {name!r} is conditional on {param.condition.param!r}, which must be declared before it"
                )
            if isinstance(param, PerLayerParam):
                source = seen.get(param.length_from)
                if not isinstance(source, IntParam):
                    raise ValueError(
                        f"per_layer parameter {name!r} takes its length from {param.length_from!r}, "
                        "which must be an int parameter declared before it"
                    )
            seen[name] = param
        return self

    def sample(self, trial: optuna.Trial) -> dict[str, Any]:
        """Ask ``trial`` for every active parameter; per-layer values come back as lists."""
        values: dict[str, Any] = {}
        for name, param in self.params.items():
            if not _active(param, values):
                continue
            if isinstance(param, PerLayerParam):
                count = values[param.length_from]
                values[name] = [_suggest(trial, f"{name}_{i}", param.item) for i in range(count)]
            else:
                values[name] = _suggest(trial, name, param)
        return values

    def flatten(self, values: dict[str, Any]) -> dict[str, Any]:
        """Per-layer lists as ``name_i`` keys: the form Optuna stores (used by ``enqueue_trial``)."""
        flat: dict[str, Any] = {}
        for name, value in values.items():
            if isinstance(self.params.get(name), PerLayerParam):
                flat.update({f"{name}_{i}": v for i, v in enumerate(value)})
            else:
                flat[name] = value
        return flat

    def distributions(self, values: dict[str, Any]) -> dict[str, optuna.distributions.BaseDistribution]:
        """Optuna distributions of the flat parameters that ``values`` (nested form) sets."""
        result: dict[str, optuna.distributions.BaseDistribution] = {}
        for name, value in values.items():
            param = self.params[name]
            if isinstance(param, PerLayerParam):
                result.update({f"{name}_{i}": param.item.distribution() for i in range(len(value))})
            else:
                result[name] = param.distribution()
        return result

    def validate_values(self, values: dict[str, Any]) -> None:
        """Raise ``ValueError`` naming the first value that lies outside the space."""
        for name, param in self.params.items():
            active = _active(param, values)
            if not active:
                if name in values:
                    raise ValueError(f"parameter {name!r} is given but its condition does not hold")
                continue
            if name not in values:
                raise ValueError(f"parameter {name!r} is missing")
            value = values[name]
            if isinstance(param, PerLayerParam):
                count = values[param.length_from]
                if not isinstance(value, list) or len(value) != count:
                    raise ValueError(f"parameter {name!r} needs a list of {count} values")
                bad = [v for v in value if not param.item.contains(v)]
                if bad:
                    raise ValueError(f"parameter {name!r} has values outside its range: {bad}")
            elif not param.contains(value):
                raise ValueError(f"parameter {name!r}={value!r} lies outside its range")
        unknown = set(values) - set(self.params)
        if unknown:
            raise ValueError(f"unknown parameters: {sorted(unknown)}")


def _active(param: Param, values: dict[str, Any]) -> bool:
    condition = param.condition
    return condition is None or values.get(condition.param, object()) in condition.values


def _suggest(trial: optuna.Trial, name: str, param: IntParam | FloatParam | CategoricalParam) -> Any:
    if isinstance(param, IntParam):
        return trial.suggest_int(name, param.low, param.high, step=param.step, log=param.log)
    if isinstance(param, FloatParam):
        return trial.suggest_float(name, param.low, param.high, step=param.step, log=param.log)
    return trial.suggest_categorical(name, param.choices)
