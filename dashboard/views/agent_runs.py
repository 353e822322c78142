"""Agent runs: the orchestrating agent's plan, every stage, every decision with its reason, and how the front grew."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from dashboard import data, ui

st.title("Agent runs")
st.caption("`hilnas run GOAL`: the plan of stages, the planner's decisions with their reasons, the front per round.")
url = ui.open_store()
ui.capability_or_stop(url, "agent", "The orchestrating agent", "db/models/agent.py")

runs = data.table_frame(url, "pipeline", "hilnas_pipeline_runs")
runs = runs[runs["kind"] == "agent"]
if runs.empty:
    st.info("No agent run in the store yet (`hilnas run GOAL`).")
    st.stop()
overview = runs.assign(
    goal=[spec.get("goal", {}).get("name") for spec in runs["spec"]],
    planner=[spec.get("planner") for spec in runs["spec"]],
)
st.dataframe(
    overview[["id", "name", "planner", "status", "error", "created_at", "finished_at"]],
    hide_index=True,
    width="stretch",
)
labels = {int(r.id): f"#{r.id} {r.name} ({r.status})" for r in runs.itertuples()}
run_id = st.selectbox("Run", list(labels), format_func=labels.get, key="agent.run")

decisions = data.table_frame(url, "agent", "hilnas_agent_decisions")
decisions = decisions[decisions["run_id"] == run_id].sort_values("id")
stages = data.table_frame(url, "pipeline", "hilnas_pipeline_stages")
stages = stages[stages["run_id"] == run_id].sort_values("position")
stops = decisions[(decisions["action"] == "stop") & decisions["accepted"]]
if not stops.empty:
    st.success(f"Stopped: {stops.iloc[-1]['reason']}")

latest = decisions.iloc[-1]["state"] if not decisions.empty else {}
cells = st.columns(4)
for cell, (name, budget) in zip(cells, (latest.get("budgets") or {}).items(), strict=False):
    cell.metric(name.replace("_", " "), f"{budget['used']:g} of {budget['limit']:g}")

st.subheader("Plan")
st.dataframe(stages[["position", "name", "status", "duration_s", "error"]], hide_index=True, width="stretch")

st.subheader("Decisions")
refused = int((~decisions["accepted"]).sum())
st.caption(f"{len(decisions)} decisions, {refused} refused (a refused call's reason is in the last column).")
log = decisions.assign(
    arguments=[", ".join(f"{k}={v}" for k, v in a.items() if k != "reason") for a in decisions["arguments"]]
)
st.dataframe(
    log[["round", "planner", "action", "arguments", "accepted", "reason", "rejection"]],
    hide_index=True,
    width="stretch",
)

st.subheader("Front per round")
history = pd.DataFrame(latest.get("hypervolume") or [])
if history.empty:
    st.info("No search of this run has finished yet.")
else:
    figure = go.Figure(go.Scatter(x=history["round"], y=history["value"], mode="lines+markers", name="hypervolume"))
    figure.update_layout(xaxis_title="round", yaxis_title="hypervolume of the feasible candidates so far", height=320)
    st.plotly_chart(figure, key="agent.hypervolume")
front = pd.DataFrame(latest.get("verified_front") or [])
if not front.empty:
    front = front.assign(decode_ms=[m.get("decode") for m in front["measured_ms"]])
    scatter = go.Figure(
        go.Scatter(
            x=front["decode_ms"],
            y=front["loss"],
            mode="markers",
            text=[f"search {s}, trial {t}" for s, t in zip(front["search_id"], front["trial"], strict=True)],
        )
    )
    scatter.update_layout(xaxis_title="measured decode ms", yaxis_title="loss", title="Verified front", height=320)
    st.plotly_chart(scatter, key="agent.front")
