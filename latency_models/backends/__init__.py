"""Latency backends by name, imported lazily (a missing runtime only matters when it is asked for)."""

from __future__ import annotations

import importlib

from hilnas.errors import UserError
from latency_models.backends.base import Backend, ExportFailure, PreparedGraph

__all__ = ["Backend", "ExportFailure", "PreparedGraph", "available_backends", "get_backend"]

_BACKENDS: dict[str, str] = {
    "executorch-xnnpack": "latency_models.backends.executorch_xnnpack:ExecuTorchXnnpackBackend",
    "torch-eager": "latency_models.backends.eager:TorchEagerBackend",
}


def available_backends() -> list[str]:
    return sorted(_BACKENDS)


def get_backend(name: str) -> Backend:
    """An instance of backend ``name``; an unknown name is a ``UserError``."""
    target = _BACKENDS.get(name)
    if target is None:
        raise UserError(f"Unknown latency backend {name!r}; choose one of: {', '.join(available_backends())}.")
    module_name, _, attr = target.partition(":")
    return getattr(importlib.import_module(module_name), attr)()
