"""Plotly figures for the dashboard pages; pure functions of data frames, no Streamlit calls."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative

from search.pareto import pareto_mask, to_minimization

#: Above this many points a scatter switches to WebGL; below it SVG renders everywhere (also headless).
WEBGL_THRESHOLD = 3000
PALETTE = qualitative.Plotly


def front_mask(frame: pd.DataFrame, axes: list[str], directions: list[str]) -> np.ndarray:
    """Non-dominated rows of ``frame`` on the shown ``axes`` (rows with a missing value never count)."""
    values = frame[axes].to_numpy(dtype=float)
    finite = np.isfinite(values).all(axis=1)
    mask = np.zeros(len(frame), dtype=bool)
    if finite.any():
        mask[finite] = pareto_mask(to_minimization(values[finite], directions))
    return mask


def pareto_figure(
    series: list[tuple[str, pd.DataFrame, np.ndarray]],
    axes: list[str],
    highlight: tuple[int, int] | None = None,
) -> go.Figure:
    """All trials faint, each front bold, for one or more searches on the same two or three axes.

    ``series`` holds ``(label, trials, front mask)``; every trials frame needs ``search_id``
    and ``number`` columns, which become the points' ``customdata`` so a click identifies the trial.
    """
    figure = go.Figure()
    total = sum(len(frame) for _, frame, _ in series)
    three_d = len(axes) == 3
    for index, (label, frame, mask) in enumerate(series):
        color = PALETTE[index % len(PALETTE)]
        for on_front, name, opacity, size in ((False, "all trials", 0.3, 6), (True, "front", 1.0, 9)):
            part = frame[mask == on_front]
            if three_d:
                if not on_front:
                    part = part.assign(_hover="")
                figure.add_trace(
                    go.Scatter3d(
                        x=part[axes[0]],
                        y=part[axes[1]],
                        z=part[axes[2]],
                        mode="markers",
                        name=f"{label} · {name}",
                        marker={"size": size / 2, "color": color, "opacity": opacity},
                        customdata=part[["search_id", "number"]].to_numpy(),
                        hovertemplate=_hover(axes),
                    )
                )
                continue
            if on_front:
                part = part.sort_values(axes[0])
            trace = go.Scattergl if total > WEBGL_THRESHOLD else go.Scatter
            figure.add_trace(
                trace(
                    x=part[axes[0]],
                    y=part[axes[1]],
                    mode="lines+markers" if on_front else "markers",
                    name=f"{label} · {name}",
                    line={"color": color, "width": 1.5, "shape": "hv"} if on_front else None,
                    marker={
                        "size": size,
                        "color": color,
                        "opacity": opacity,
                        "line": {"width": 1, "color": "white"} if on_front else {"width": 0},
                    },
                    customdata=part[["search_id", "number"]].to_numpy(),
                    hovertemplate=_hover(axes),
                )
            )
    if highlight is not None:
        _add_highlight(figure, series, axes, highlight)
    layout: dict[str, Any] = {
        "height": 560,
        "margin": {"l": 10, "r": 10, "t": 30, "b": 10},
        "legend": {"orientation": "h", "y": -0.15},
        "clickmode": "event+select",
    }
    if three_d:
        layout["scene"] = {"xaxis_title": axes[0], "yaxis_title": axes[1], "zaxis_title": axes[2]}
    else:
        layout.update(xaxis_title=axes[0], yaxis_title=axes[1])
    figure.update_layout(**layout)
    return figure


def _hover(axes: list[str]) -> str:
    coordinates = "<br>".join(f"{axis}: %{{{letter}:.4g}}" for axis, letter in zip(axes, ("x", "y", "z"), strict=False))
    return f"search %{{customdata[0]}} · trial %{{customdata[1]}}<br>{coordinates}<extra></extra>"


def _add_highlight(
    figure: go.Figure, series: list[tuple[str, pd.DataFrame, np.ndarray]], axes: list[str], key: tuple[int, int]
) -> None:
    for _, frame, _ in series:
        row = frame[(frame["search_id"] == key[0]) & (frame["number"] == key[1])]
        if row.empty:
            continue
        marker = {"size": 16, "symbol": "circle-open", "color": "black", "line": {"width": 3}}
        if len(axes) == 3:
            figure.add_trace(
                go.Scatter3d(
                    x=row[axes[0]], y=row[axes[1]], z=row[axes[2]], mode="markers", marker=marker, name="selected"
                )
            )
        else:
            figure.add_trace(go.Scatter(x=row[axes[0]], y=row[axes[1]], mode="markers", marker=marker, name="selected"))


def hypervolume_figure(history: pd.DataFrame, labels: dict[int, str]) -> go.Figure:
    figure = go.Figure()
    for index, (search_id, part) in enumerate(history.groupby("search_id", sort=True)):
        figure.add_trace(
            go.Scatter(
                x=part["n_finished"],
                y=part["hypervolume"],
                mode="lines",
                line={"shape": "hv", "color": PALETTE[index % len(PALETTE)]},
                name=labels.get(int(search_id), f"#{search_id}"),
            )
        )
    figure.update_layout(
        height=320,
        margin={"l": 10, "r": 10, "t": 30, "b": 10},
        xaxis_title="finished trials",
        yaxis_title="hypervolume",
    )
    return figure


def parity_figure(
    frame: pd.DataFrame,
    measured: str,
    predicted: str,
    color: str | None = None,
    low: str | None = None,
    high: str | None = None,
    title: str = "",
) -> go.Figure:
    """Predicted against measured with the y = x diagonal; optional spread as horizontal error bars."""
    figure = go.Figure()
    groups = frame.groupby(color, sort=True) if color else [("", frame)]
    for index, (name, part) in enumerate(groups):
        error_x = None
        if low and high:
            error_x = {
                "type": "data",
                "symmetric": False,
                "array": (part[high] - part[measured]).to_numpy(),
                "arrayminus": (part[measured] - part[low]).to_numpy(),
                "thickness": 1,
            }
        figure.add_trace(
            go.Scatter(
                x=part[measured],
                y=part[predicted],
                mode="markers",
                name=str(name) or "points",
                error_x=error_x,
                marker={"color": PALETTE[index % len(PALETTE)], "size": 7},
            )
        )
    if len(frame):
        values = pd.concat([frame[measured], frame[predicted]]).astype(float)
        lo, hi = float(values.min()), float(values.max())
        figure.add_trace(
            go.Scatter(x=[lo, hi], y=[lo, hi], mode="lines", name="y = x", line={"dash": "dash", "color": "gray"})
        )
    figure.update_layout(
        title=title,
        height=420,
        margin={"l": 10, "r": 10, "t": 40, "b": 10},
        xaxis_title=measured,
        yaxis_title=predicted,
    )
    return figure


def layer_pattern_figure(params: dict[str, Any]) -> go.Figure | None:
    """The per-layer parameters (lists, e.g. the attention pattern) as a labelled layer-by-layer grid.

    Colour is scaled within each row (numbers by value, categories by their order), so every row reads
    on its own while the cell text gives the value.
    """
    rows = {name: value for name, value in params.items() if isinstance(value, list) and value}
    if not rows:
        return None
    width = max(len(v) for v in rows.values())
    z, text = [], []
    for values in rows.values():
        z.append(_row_shades(values) + [None] * (width - len(values)))
        text.append([str(v) for v in values] + [""] * (width - len(values)))
    figure = go.Figure(
        go.Heatmap(
            z=z,
            x=list(range(width)),
            y=list(rows),
            text=text,
            texttemplate="%{text}",
            colorscale="Tealgrn",
            zmin=0,
            zmax=1,
            showscale=False,
            xgap=2,
            ygap=2,
            hovertemplate="%{y} · layer %{x}: %{text}<extra></extra>",
        )
    )
    figure.update_layout(
        height=90 + 40 * len(rows),
        margin={"l": 10, "r": 10, "t": 10, "b": 10},
        xaxis_title="layer",
        xaxis={"dtick": 1},
    )
    return figure


def _row_shades(values: list[Any]) -> list[float]:
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        low, high = min(values), max(values)
        return [0.5 if high == low else (v - low) / (high - low) for v in values]
    order = sorted({str(v) for v in values})
    return [order.index(str(v)) / max(len(order) - 1, 1) for v in values]


def samples_figure(measurements: pd.DataFrame) -> go.Figure:
    """Every timing sample of each measurement, as box plots (the spread behind the median)."""
    figure = go.Figure()
    for _, row in measurements.iterrows():
        figure.add_trace(
            go.Box(
                y=row["samples_ms"],
                name=f"{row['phase']} · {row['backend']} · {row['device']}",
                boxpoints="all",
                jitter=0.4,
                pointpos=0,
            )
        )
    figure.update_layout(height=320, margin={"l": 10, "r": 10, "t": 30, "b": 10}, yaxis_title="ms", showlegend=False)
    return figure


def histogram_figure(frame: pd.DataFrame, column: str, color: str | None = None, title: str = "") -> go.Figure:
    figure = go.Figure()
    groups = frame.groupby(color, sort=True) if color else [("", frame)]
    for index, (name, part) in enumerate(groups):  # coloured like parity_figure's groups, which sit beside it
        figure.add_trace(
            go.Histogram(
                x=part[column], name=str(name) or column, opacity=0.7, marker={"color": PALETTE[index % len(PALETTE)]}
            )
        )
    figure.update_layout(
        barmode="overlay", title=title, height=320, margin={"l": 10, "r": 10, "t": 40, "b": 10}, xaxis_title=column
    )
    return figure


def spread_figure(frame: pd.DataFrame, x: str, y: str, color: str, label: str, title: str = "") -> go.Figure:
    """A box per (``x``, ``color``) group with every point drawn beside it, so both the spread and the
    individual runs (e.g. one per random seed, named by the ``label`` column on hover) show."""
    figure = go.Figure()
    for index, (name, part) in enumerate(frame.groupby(color, sort=True)):
        figure.add_trace(
            go.Box(
                x=part[x],
                y=part[y],
                name=str(name),
                boxpoints="all",
                jitter=0.5,
                pointpos=0,
                marker={"color": PALETTE[index % len(PALETTE)], "size": 6},
                text=part[label].astype(str),
                hovertemplate=f"{x} %{{x}}<br>{label} %{{text}}<br>{y} %{{y:.4g}}<extra>%{{fullData.name}}</extra>",
            )
        )
    figure.update_layout(
        boxmode="group",
        title=title,
        height=420,
        margin={"l": 10, "r": 10, "t": 40, "b": 10},
        xaxis_title=x,
        yaxis_title=y,
        legend_title=color,
    )
    return figure


VERDICT_COLOURS = {"satisfied": "#2ca02c", "unsatisfied": "#d62728", "error": "#ff7f0e"}


def requirement_graph_figure(verdicts: pd.DataFrame) -> go.Figure:
    """The prerequisite DAG, one column per depth (a requirement sits right of all its prerequisites).

    ``verdicts`` needs ``requirement_id``, ``prerequisites`` (list of ids), ``verdict`` and ``criteria``.
    """
    prerequisites = {int(r.requirement_id): [int(p) for p in r.prerequisites or []] for r in verdicts.itertuples()}
    depth: dict[int, int] = {}

    def depth_of(node: int, seen: frozenset[int] = frozenset()) -> int:
        if node not in depth:
            parents = [p for p in prerequisites.get(node, []) if p in prerequisites and p not in seen]
            depth[node] = 1 + max((depth_of(p, seen | {node}) for p in parents), default=-1)
        return depth[node]

    for node in prerequisites:
        depth_of(node)
    rows: dict[int, int] = {}
    position: dict[int, tuple[int, int]] = {}
    for node in sorted(prerequisites):
        column = depth[node]
        position[node] = (column, rows.get(column, 0))
        rows[column] = rows.get(column, 0) + 1
    edge_x: list[float | None] = []
    edge_y: list[float | None] = []
    for node, parents in prerequisites.items():
        for parent in parents:
            if parent in position:
                edge_x += [position[parent][0], position[node][0], None]
                edge_y += [-position[parent][1], -position[node][1], None]
    figure = go.Figure(
        go.Scatter(
            x=edge_x, y=edge_y, mode="lines", line={"color": "#bbbbbb", "width": 1}, hoverinfo="skip", showlegend=False
        )
    )
    for verdict, part in verdicts.groupby("verdict", sort=True):
        nodes = [int(n) for n in part["requirement_id"]]
        figure.add_trace(
            go.Scatter(
                x=[position[n][0] for n in nodes],
                y=[-position[n][1] for n in nodes],
                mode="markers+text",
                text=[f"R{n}" for n in nodes],
                textposition="middle center",
                textfont={"color": "white", "size": 10},
                marker={"size": 26, "color": VERDICT_COLOURS.get(str(verdict), "#7f7f7f")},
                name=str(verdict),
                hovertext=[str(c)[:200] for c in part["criteria"]],
                hoverinfo="text",
            )
        )
    figure.update_layout(
        height=120 + 45 * max(rows.values(), default=1),
        margin={"l": 10, "r": 10, "t": 10, "b": 10},
        xaxis={"title": "prerequisite depth", "dtick": 1, "zeroline": False},
        yaxis={"visible": False},
        legend={"orientation": "h"},
    )
    return figure
