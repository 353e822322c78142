"""Pareto explorer: the front over all trials on any two or three objectives, filters, hypervolume history,
predicted vs measured latency, one trial in depth, and a second search on the same plot."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from dashboard import data, figures, ui

st.title("Pareto explorer")
url = ui.open_store()
searches = data.searches(url)
if searches.empty:
    st.info("The store holds no searches yet; start one on the Launch page or with `hilnas search run`.")
    st.stop()

pick, compare_pick = st.columns(2)
with pick:
    search_id = ui.pick_search(searches, "Search", key="pareto.search")
with compare_pick:
    compare_options = [None] + [int(i) for i in searches["id"] if int(i) != search_id]
    labels = {int(row["id"]): ui.search_label(row) for _, row in searches.iterrows()}
    compare_id = st.selectbox(
        "Compare with",
        compare_options,
        format_func=lambda i: "(no second search)" if i is None else labels[i],
        key="pareto.compare",
    )

info = data.search_info(url, search_id)
shown_ids = [search_id] + ([compare_id] if compare_id is not None else [])
infos = {i: data.search_info(url, i) for i in shown_ids}
frames = {}
for i in shown_ids:
    trials = data.trials(url, i)
    frames[i] = trials[trials["state"] == "complete"].assign(search_id=i)

metrics = data.metric_columns(frames[search_id])
if not metrics:
    st.info(f"Search {info.label} has no completed trial yet.")
    st.stop()
objective_names = [name for name, _ in info.objectives if name in metrics]
axes = st.multiselect(
    "Objectives to plot (two or three)",
    metrics,
    default=objective_names[:3] or metrics[:2],
    max_selections=3,
    key=f"pareto.axes.{search_id}",
)
if len(axes) < 2:
    st.info("Choose two or three objectives to plot.")
    st.stop()
directions = [info.direction(axis) for axis in axes]
not_objectives = [axis for axis in axes if axis not in objective_names]
if not_objectives:
    st.caption(f"{', '.join(not_objectives)} is not an objective of this search; the front treats it as minimised.")

# ----------------------------------------------------------------------------- filters

with st.expander("Constraint filters", expanded=False):
    feasible_only = st.checkbox("Feasible trials only (the search's constraints hold)", value=False, key="pareto.feas")
    bounds: dict[str, tuple[float, float]] = {}
    filter_columns = st.columns(3)
    for index, metric in enumerate(metrics):
        values = frames[search_id][metric].dropna().astype(float)
        low, high = (float(values.min()), float(values.max())) if len(values) else (0.0, 0.0)
        if not np.isfinite([low, high]).all() or low == high:
            continue
        with filter_columns[index % 3]:
            bounds[metric] = st.slider(metric, low, high, (low, high), key=f"pareto.filter.{search_id}.{metric}")


def filtered(frame: pd.DataFrame) -> pd.DataFrame:
    keep = pd.Series(True, index=frame.index)
    if feasible_only:
        keep &= frame["feasible"].astype(bool)
    for metric, (low, high) in bounds.items():
        if metric in frame:
            keep &= frame[metric].between(low, high) | frame[metric].isna()
    return frame[keep & frame[axes].notna().all(axis=1)]


series = []
for i in shown_ids:
    if not set(axes) <= set(frames[i].columns):
        st.warning(f"Search {infos[i].label} does not report {', '.join(set(axes) - set(frames[i].columns))}.")
        continue
    shown = filtered(frames[i])
    series.append((infos[i].label, shown, figures.front_mask(shown, axes, directions)))

# ----------------------------------------------------------------------------- the front


def remember_click() -> None:
    points = st.session_state["pareto.chart"].selection.points
    custom = points[0].get("customdata") if points else None
    if custom is None:
        return
    # Streamlit hands a point's customdata back as {"0": search_id, "1": number}.
    values = [custom[k] for k in sorted(custom, key=int)] if isinstance(custom, dict) else list(custom)
    st.session_state["pareto.selected"] = (int(values[0]), int(values[1]))


summary = st.columns(4)
summary[0].metric("Trials shown", sum(len(s[1]) for s in series))
summary[1].metric("On the front", int(sum(s[2].sum() for s in series)))
stored_hypervolume = searches.set_index("id").at[search_id, "hypervolume"]
summary[2].metric("Stored hypervolume", "n/a" if pd.isna(stored_hypervolume) else f"{stored_hypervolume:.4f}")
summary[3].metric("Reference point", ", ".join(f"{v:.3g}" for v in info.reference_point or ()) or "n/a")

selected = st.session_state.get("pareto.selected")
if selected is not None and selected[0] not in shown_ids:
    selected = None
st.plotly_chart(
    figures.pareto_figure(series, axes, highlight=selected),
    key="pareto.chart",
    on_select=remember_click,
    selection_mode="points",
)
st.caption("Click a point to open its trial below; faint points are all trials, bold ones the front on these axes.")

history = data.hypervolume_history(url, tuple(shown_ids))
verified = data.verified_latency(url, search_id)
left, right = st.columns(2)
with left:
    st.subheader("Hypervolume history")
    if history.empty:
        st.caption("No hypervolume recorded yet.")
    else:
        st.plotly_chart(figures.hypervolume_figure(history, {i: infos[i].label for i in shown_ids}), key="pareto.hv")
with right:
    st.subheader("Predicted vs measured latency")
    if verified.empty:
        st.caption(
            "No verified points: this search has no device measurement that carries a predictor's estimate "
            "(the verification stage stores it as `predicted_ms`)."
        )
    else:
        st.plotly_chart(
            figures.parity_figure(verified, "measured_ms", "predicted_ms", color="phase", low="p10_ms", high="p90_ms"),
            key="pareto.parity",
        )

# ----------------------------------------------------------------------------- one trial

st.subheader("Trial")
front_rows = pd.concat([frame[mask] for _, frame, mask in series]) if series else pd.DataFrame()
choices = [(int(r.search_id), int(r.number)) for r in front_rows.itertuples()] if len(front_rows) else []
if selected is not None and selected not in choices:
    choices.insert(0, selected)
if not choices:
    st.caption("No trial to show.")
    st.stop()


def remember_pick() -> None:
    st.session_state["pareto.selected"] = st.session_state["pareto.trial"]


if selected is not None:
    st.session_state["pareto.trial"] = selected
elif st.session_state.get("pareto.trial") not in choices:
    st.session_state["pareto.trial"] = choices[0]
chosen_search, number = st.selectbox(
    "Open trial (front trials, or the point you clicked)",
    choices,
    format_func=lambda key: f"search #{key[0]} · trial {key[1]}",
    key="pareto.trial",
    on_change=remember_pick,
)
detail = data.trial_detail(url, chosen_search, number)
if detail is None:
    st.warning(f"Trial {number} of search {chosen_search} is no longer in the store.")
    st.stop()

state = f"{detail['state']}{' · on the stored front' if detail['is_pareto'] else ''}"
st.markdown(
    f"**Search #{chosen_search} · trial {number}** · {state} · "
    f"{'feasible' if detail['feasible'] else 'violates a constraint'} · attempts {detail['attempts']} · "
    f"node `{detail['node'] or 'n/a'}` · arch `{detail['arch_hash'] or 'n/a'}`"
)
arch, metrics_column = st.columns([3, 2])
with arch:
    st.markdown("**Architecture**")
    pattern = figures.layer_pattern_figure(detail["params"])
    if pattern is not None:
        st.plotly_chart(pattern, key="pareto.layers")
    scalars = {k: v for k, v in detail["params"].items() if not isinstance(v, list)}
    st.dataframe(
        pd.DataFrame({"parameter": list(scalars), "value": [str(v) for v in scalars.values()]}),
        hide_index=True,
        width="stretch",
        height=min(35 * (len(scalars) + 1) + 3, 400),
    )
with metrics_column:
    st.markdown("**Metrics**")
    st.dataframe(
        pd.DataFrame(
            {
                "metric": list(detail["metrics"]),
                "value": list(detail["metrics"].values()),
                "objective": [m in detail["values"] for m in detail["metrics"]],
            }
        ),
        hide_index=True,
        width="stretch",
    )
    if detail["error"]:
        st.code(detail["error"], language="text")

measurements = detail["measurements"]
st.markdown("**Measurements**")
if measurements.empty:
    st.caption("No device measurement of this architecture in the store.")
else:
    st.dataframe(measurements.drop(columns=["samples_ms"]), hide_index=True, width="stretch")
    st.plotly_chart(figures.samples_figure(measurements), key="pareto.samples")

st.markdown("**Artifacts**")
if not detail["artifacts"]:
    st.caption("This trial exported no artifact.")
for artifact in detail["artifacts"]:
    content = data.read_artifact(artifact["path"])
    description = f"{artifact['kind']} · {artifact['size_bytes']:,} bytes · sha256 {artifact['sha256'][:12]}…"
    if content is None:
        st.caption(f"{description} — `{artifact['path']}` is not on this machine.")
    else:
        st.download_button(
            f"Download {artifact['path'].rsplit('/', 1)[-1]} ({description})",
            content,
            file_name=artifact["path"].rsplit("/", 1)[-1],
            key=f"pareto.artifact.{artifact['id']}",
        )
