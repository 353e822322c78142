"""Searches: every search with status, progress, failures and best hypervolume; refreshes while one runs."""

from __future__ import annotations

import pandas as pd
import streamlit as st
import yaml

from dashboard import data, figures, ui

st.title("Searches")
url = ui.open_store()

any_running = bool((data.searches(url)["status"] == "running").any())
live = st.toggle(
    "Live refresh",
    value=any_running,
    key="searches.live",
    help=f"Re-read the store every {data.LIVE_TTL_S} s while a search runs.",
)


@st.fragment(run_every=data.LIVE_TTL_S if live else None)
def search_table() -> None:
    searches = data.searches(url)
    if searches.empty:
        st.info("The store holds no searches yet; start one on the Launch page or with `hilnas search run`.")
        return
    running = int((searches["status"] == "running").sum())
    columns = st.columns(4)
    columns[0].metric("Searches", len(searches))
    columns[1].metric("Running", running)
    columns[2].metric("Finished trials", int(searches["finished"].sum()))
    columns[3].metric("Failed trials", int(searches["failed"].sum()))
    table = searches.assign(progress=searches["finished"] / searches["target"].clip(lower=1))
    st.dataframe(
        table[
            [
                "id",
                "name",
                "family",
                "status",
                "progress",
                "finished",
                "target",
                "running",
                "failed",
                "hypervolume",
                "created_at",
                "finished_at",
                "error",
            ]
        ],
        hide_index=True,
        width="stretch",
        column_config={
            "progress": st.column_config.ProgressColumn("progress", min_value=0.0, max_value=1.0, format="percent"),
            "hypervolume": st.column_config.NumberColumn("best hypervolume", format="%.4f"),
            "created_at": st.column_config.DatetimeColumn("created", format="YYYY-MM-DD HH:mm"),
            "finished_at": st.column_config.DatetimeColumn("finished", format="YYYY-MM-DD HH:mm"),
        },
        key="searches.table",
    )


search_table()

searches = data.searches(url)
if searches.empty:
    st.stop()

st.subheader("Details")
search_id = ui.pick_search(searches, "Search", key="searches.detail")
info = data.search_info(url, search_id)
trials = data.trials(url, search_id)

left, right = st.columns([3, 2])
with left:
    history = data.hypervolume_history(url, (search_id,))
    if history.empty:
        st.caption("No hypervolume yet: it is recorded once a trial completes.")
    else:
        st.plotly_chart(figures.hypervolume_figure(history, {search_id: info.label}), key="searches.hv")
with right:
    states = trials["state"].value_counts().rename_axis("state").reset_index(name="trials")
    st.dataframe(states, hide_index=True, width="stretch")
    objectives = ", ".join(f"{name} ({direction})" for name, direction in info.objectives)
    st.markdown(f"**Objectives:** {objectives}  \n**Reference point:** {info.reference_point}")

failures = trials[trials["error"].notna()] if "error" in trials else pd.DataFrame()
with st.expander(f"Failures and retried trials ({len(failures)})", expanded=False):
    if failures.empty:
        st.caption("No trial raised, crashed or timed out.")
    else:
        st.dataframe(failures[["number", "state", "attempts", "node", "error"]], hide_index=True, width="stretch")
with st.expander("Spec", expanded=False):
    st.code(yaml.safe_dump(info.spec, sort_keys=False), language="yaml")
