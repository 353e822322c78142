"""Plotly figures saved with every fit: loss against effective tokens (log-log, bootstrap bands) and residuals.

On the log-log figure each size's curve is E + A/N^alpha + B/D_eff^beta over the observed D_eff range,
with D_eff computed from the full-data fit; the shaded band is the 2.5-97.5 percentile of the curve over
bootstrap refits (core constants of each refit, the same D_eff axis).
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.colors import sample_colorscale

from search.scaling.data import ScalingData
from search.scaling.evaluation import LawReport

CURVE_POINTS = 60


def _curve(theta: np.ndarray, n: float, log_deff: np.ndarray) -> np.ndarray:
    e, a, b, alpha, beta = theta[:5]
    return np.exp(e) + np.exp(a - alpha * np.log(n)) + np.exp(b - beta * log_deff)


def loglog_figure(data: ScalingData, report: LawReport) -> go.Figure:
    fit = report.fit
    log_deff, _ = report.form.log_deff(fit.theta[5:], data)
    grid = np.linspace(log_deff.min(), log_deff.max(), CURVE_POINTS)
    colors = sample_colorscale("Viridis", np.linspace(0.0, 0.9, len(data.sizes)))
    figure = go.Figure()
    for color, n in zip(colors, data.sizes, strict=True):
        mine = data.N == n
        if len(report.bootstrap.thetas):
            curves = np.array([_curve(t, n, grid) for t in report.bootstrap.thetas])
            low, high = np.percentile(curves, [2.5, 97.5], axis=0)
            figure.add_trace(
                go.Scatter(
                    x=np.concatenate([np.exp(grid), np.exp(grid[::-1])]),
                    y=np.concatenate([high, low[::-1]]),
                    fill="toself",
                    fillcolor=color,
                    opacity=0.2,
                    line={"width": 0},
                    hoverinfo="skip",
                    showlegend=False,
                )
            )
        figure.add_trace(
            go.Scatter(
                x=np.exp(grid), y=_curve(fit.theta, n, grid), mode="lines", line={"color": color}, name=f"fit N={n:.3g}"
            )
        )
        hover = list(np.asarray(data.labels, dtype=object)[mine]) if data.labels else None
        figure.add_trace(
            go.Scatter(
                x=np.exp(log_deff[mine]),
                y=data.loss[mine],
                mode="markers",
                marker={"color": color},
                name=f"N={n:.3g}",
                text=hover,
            )
        )
    figure.update_xaxes(type="log", title="effective tokens D_eff" if report.form.name != "raw" else "tokens D")
    figure.update_yaxes(type="log", title="loss")
    figure.update_layout(title=f"{report.form.name}: L = E + A/N^alpha + B/D_eff^beta (95% bootstrap band)")
    return figure


def residual_figure(data: ScalingData, report: LawReport) -> go.Figure:
    predicted = report.fit.predict(data)
    residual = np.log(data.loss) - np.log(predicted)
    figure = go.Figure(
        go.Scatter(
            x=predicted,
            y=residual,
            mode="markers",
            marker={"color": np.log10(data.N), "colorscale": "Viridis", "colorbar": {"title": "log10 N"}},
            text=list(data.labels) if data.labels else None,
        )
    )
    figure.add_hline(y=0.0, line_dash="dot")
    figure.update_xaxes(type="log", title="predicted loss")
    figure.update_yaxes(title="log observed - log predicted")
    figure.update_layout(title=f"{report.form.name}: residuals")
    return figure


def attach_figures(data: ScalingData, report: LawReport) -> None:
    """Store both figures on the report as plotly JSON (what the store keeps and the dashboard shows)."""
    report.figures = {
        "loglog": loglog_figure(data, report).to_json(),
        "residuals": residual_figure(data, report).to_json(),
    }
