"""Effective-token forms D_eff(D, diversity, syntheticity, unique tokens): a small string registry.

The law is L = E + A / N^alpha + B / D_eff^beta. A form turns each point's raw tokens and data-quality
columns into log D_eff and its derivatives with respect to the form's own parameters (the fit uses
exact gradients). Any constant factor on D_eff is absorbed by B, so forms only need to express how
quality and repetition change effective tokens *relative to each other*.

Built-in forms:

- ``raw``: D_eff = D (the baseline every other form has to beat).
- ``multiplicative``: D_eff = D * diversity^gamma * exp(-delta * syntheticity). With syntheticity a
  teacher log-perplexity gap, exp(-delta * s) is a power of the perplexity ratio, so this is a power form.
- ``additive``: D_eff = D * max(floor, 1 - gamma * (1 - diversity) - delta * syntheticity): quality
  penalties add up instead of compounding.
- ``data_constrained`` (Muennighoff et al., 2023): with U unique tokens repeated R = D/U - 1 times,
  D_eff = U + U * R* * (1 - exp(-R / R*)); the repetition constant R* is fitted (as log R*).

Register more with ``register_form``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from hilnas.errors import UserError
from search.scaling.data import ScalingData

#: log D_eff and its Jacobian (points x form parameters) at the form parameters ``theta``.
LogDeff = Callable[[np.ndarray, ScalingData], tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class DeffForm:
    """One way of computing effective tokens, with what the fit needs to know about its parameters."""

    name: str
    description: str
    param_names: tuple[str, ...]
    bounds: tuple[tuple[float, float], ...]
    start_values: tuple[tuple[float, ...], ...]  # candidate starting values per parameter (grid axes)
    requires: tuple[str, ...]  # data columns the form reads besides D
    log_deff: LogDeff

    def check_data(self, data: ScalingData) -> None:
        missing = [c for c in self.requires if data.column(c) is None]
        if missing:
            raise UserError(
                f"The D_eff form {self.name!r} needs the column(s) {', '.join(missing)}, which the data lacks."
            )


def _raw(theta: np.ndarray, data: ScalingData) -> tuple[np.ndarray, np.ndarray]:
    return np.log(data.D), np.zeros((len(data), 0))


def _multiplicative(theta: np.ndarray, data: ScalingData) -> tuple[np.ndarray, np.ndarray]:
    gamma, delta = theta
    log_div = np.log(data.diversity)
    log_deff = np.log(data.D) + gamma * log_div - delta * data.syntheticity
    return log_deff, np.column_stack([log_div, -data.syntheticity])


ADDITIVE_FLOOR = 1e-3


def _additive(theta: np.ndarray, data: ScalingData) -> tuple[np.ndarray, np.ndarray]:
    gamma, delta = theta
    shortfall = 1.0 - data.diversity
    factor = 1.0 - gamma * shortfall - delta * data.syntheticity
    active = factor > ADDITIVE_FLOOR
    safe = np.where(active, factor, ADDITIVE_FLOOR)
    jac = np.column_stack([-shortfall, -data.syntheticity]) / safe[:, None] * active[:, None]
    return np.log(data.D) + np.log(safe), jac


def _data_constrained(theta: np.ndarray, data: ScalingData) -> tuple[np.ndarray, np.ndarray]:
    (log_r_star,) = theta
    r_star = np.exp(log_r_star)
    unique = np.minimum(data.unique_tokens, data.D)
    repeats = data.D / unique - 1.0
    decay = np.exp(-repeats / r_star)
    deff = unique + unique * r_star * (1.0 - decay)
    # d D_eff / d log R* = R* * d D_eff / d R*
    d_deff = unique * r_star * ((1.0 - decay) - (repeats / r_star) * decay)
    return np.log(deff), (d_deff / deff)[:, None]


_FORMS: dict[str, DeffForm] = {}


def register_form(form: DeffForm) -> None:
    """Add (or replace) a form under ``form.name``."""
    _FORMS[form.name] = form


def get_form(name: str) -> DeffForm:
    if name not in _FORMS:
        raise UserError(f"Unknown D_eff form {name!r}; available forms: {', '.join(available_forms())}.")
    return _FORMS[name]


def available_forms() -> list[str]:
    return sorted(_FORMS)


def forms_for(data: ScalingData) -> list[str]:
    """The registered forms whose columns ``data`` has, ``raw`` first."""
    usable = [n for n, f in _FORMS.items() if all(data.column(c) is not None for c in f.requires)]
    return sorted(usable, key=lambda n: (n != "raw", n))


register_form(DeffForm("raw", "D_eff = D", (), (), (), (), _raw))
register_form(
    DeffForm(
        "multiplicative",
        "D_eff = D * diversity^gamma * exp(-delta * syntheticity)",
        ("gamma", "delta"),
        ((-5.0, 5.0), (-5.0, 5.0)),
        ((0.0, 1.0), (0.0, 1.0)),
        ("diversity", "syntheticity"),
        _multiplicative,
    )
)
register_form(
    DeffForm(
        "additive",
        "D_eff = D * max(1e-3, 1 - gamma * (1 - diversity) - delta * syntheticity)",
        ("gamma", "delta"),
        ((-5.0, 5.0), (-5.0, 5.0)),
        ((0.0, 0.5), (0.0, 0.5)),
        ("diversity", "syntheticity"),
        _additive,
    )
)
register_form(
    DeffForm(
        "data_constrained",
        "D_eff = U + U * R* * (1 - exp(-(D/U - 1) / R*)), R* fitted as log R*",
        ("log_r_star",),
        ((-3.0, 8.0),),
        ((0.0, 2.5),),
        ("unique_tokens",),
        _data_constrained,
    )
)
