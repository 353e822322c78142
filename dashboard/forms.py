"""Streamlit widgets generated from pydantic models, so the Launch form follows each family's ``Options``.

Only scalar fields (bool, int, float, str, Literal, and their optional forms) get a widget; other
fields keep their defaults unless given as YAML. Bounds shown on the widgets come from the model's
own ``ge``/``le`` constraints, and the model still validates everything.
"""

from __future__ import annotations

import types
from typing import Any, Literal, Union, get_args, get_origin

import annotated_types
import streamlit as st
from pydantic import BaseModel
from pydantic.fields import FieldInfo


def _unwrap_optional(annotation: Any) -> tuple[Any, bool]:
    if get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return annotation, False


def _bounds(info: FieldInfo) -> dict[str, float]:
    bounds: dict[str, float] = {}
    for item in info.metadata:
        if isinstance(item, annotated_types.Ge):
            bounds["min_value"] = item.ge
        elif isinstance(item, annotated_types.Le):
            bounds["max_value"] = item.le
    return bounds


def renderable(info: FieldInfo) -> bool:
    base, _ = _unwrap_optional(info.annotation)
    return base in (bool, int, float, str) or get_origin(base) is Literal


def model_widgets(model: type[BaseModel], key: str, columns: int = 3) -> dict[str, Any]:
    """One widget per scalar field of ``model`` (keys ``<key>.<field>``); returns the chosen values."""
    fields = {name: info for name, info in model.model_fields.items() if renderable(info)}
    slots = st.columns(columns) if fields else []
    values: dict[str, Any] = {}
    for index, (name, info) in enumerate(fields.items()):
        with slots[index % columns]:
            values[name] = _widget(name, info, f"{key}.{name}")
    return values


def _widget(name: str, info: FieldInfo, key: str) -> Any:
    base, optional = _unwrap_optional(info.annotation)
    default = info.get_default(call_default_factory=True)
    label = name.replace("_", " ")
    help_text = info.description
    if get_origin(base) is Literal:
        choices = list(get_args(base))
        return st.selectbox(label, choices, index=choices.index(default), key=key, help=help_text)
    if base is bool:
        return st.checkbox(label, value=bool(default), key=key, help=help_text)
    if base is int:
        bounds = {k: int(v) for k, v in _bounds(info).items()}
        return st.number_input(
            label, value=default, step=1, key=key, help=_optional_help(help_text, optional), **bounds
        )
    if base is float:
        value = None if default is None else float(default)
        bounds = {k: float(v) for k, v in _bounds(info).items()}
        help_text = _optional_help(help_text, optional)
        return st.number_input(label, value=value, format="%g", key=key, help=help_text, **bounds)
    text = st.text_input(label, value=default or "", key=key, help=help_text)
    return text if text or not optional else None


def _optional_help(help_text: str | None, optional: bool) -> str | None:
    if not optional:
        return help_text
    return f"{help_text + '; ' if help_text else ''}leave empty for none"


def unrendered_fields(model: type[BaseModel]) -> list[str]:
    """Fields ``model_widgets`` leaves to YAML (lists, nested models)."""
    return [name for name, info in model.model_fields.items() if not renderable(info)]
