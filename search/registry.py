"""Families by name, imported lazily so that ``hilnas`` starts fast and optional parts stay optional.

Built-in families are listed below as ``module:Class`` strings; other packages can add families
through the ``hilnas.families`` entry-point group, and code can call ``register``.
"""

from __future__ import annotations

import importlib
from functools import cache
from importlib.metadata import entry_points
from typing import Any

from pydantic import ValidationError

from hilnas.errors import UserError
from search.family import Family

_BUILTIN: dict[str, str] = {
    "moo-benchmark": "search.families.benchmarks.problems:MultiObjectiveBenchmark",
    "mobilellm-flash": "search.families.mobilellm_flash.family:MobileLLMFlashFamily",
    "edgetam": "search.families.edgetam.family:EdgeTAMFamily",
    "quant-rotation": "search.families.quant_rotation.family:QuantRotationFamily",
}
_registered: dict[str, str | type[Family]] = dict(_BUILTIN)


def register(name: str, target: str | type[Family]) -> None:
    """Register a family under ``name`` (a class, or a lazy ``module:Class`` path)."""
    _registered[name] = target
    _family_class.cache_clear()


def available_families() -> list[str]:
    names = set(_registered)
    names.update(ep.name for ep in entry_points(group="hilnas.families"))
    return sorted(names)


@cache
def _family_class(name: str) -> type[Family]:
    target = _registered.get(name)
    if target is None:
        matches = [ep for ep in entry_points(group="hilnas.families") if ep.name == name]
        if not matches:
            raise UserError(f"Unknown family {name!r}; registered families are: {', '.join(available_families())}.")
        return matches[0].load()
    if isinstance(target, str):
        module_name, _, attr = target.partition(":")
        return getattr(importlib.import_module(module_name), attr)
    return target


def family_class(name: str) -> type[Family]:
    """The class registered as ``name``; an unknown name is a ``UserError``."""
    return _family_class(name)


def create_family(name: str, options: dict[str, Any] | None = None) -> Family:
    """An instance of family ``name`` with validated ``options``."""
    cls = family_class(name)
    try:
        parsed = cls.Options.model_validate(options or {})
    except ValidationError as exc:
        raise UserError(f"Invalid options for family {name!r}: {describe_validation_error(exc)}.") from exc
    return cls(parsed)


def describe_validation_error(exc: ValidationError) -> str:
    """The first pydantic error as ``field.path: message``, fit for a one-sentence report."""
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "(root)"
    return f"{where}: {first['msg']}".rstrip(".")
