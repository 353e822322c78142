"""Quantization: quality per rotation kind and bit setting, and the spread over random rotations.

Rotation searches (family ``quant-rotation``) store one trial per recipe, the rotation's seed being
a searched parameter, so the spread over seeds is read straight from the trials.
"""

from __future__ import annotations

import streamlit as st

from dashboard import data, figures, ui

FAMILY = "quant-rotation"

st.title("Quantization")
st.caption("SpinQuant-style rotation searches: learned, random Hadamard and no rotation at each bit setting.")
url = ui.open_store()
searches = data.searches(url)
rotation_searches = searches[searches["family"] == FAMILY]
if rotation_searches.empty:
    st.info(
        f"No {FAMILY} search in the store yet: run `hilnas quant search quant-rotation-seeds` "
        "(or launch one) to compare rotations."
    )
    st.stop()

search_id = ui.pick_search(rotation_searches, "Rotation search", key="quant.search")
trials = data.trials_with_params(url, search_id)
# Lazy: the family module imports torch, which only this page needs.
from search.families.quant_rotation.family import complete_recipes, seed_spread  # noqa: E402

done = complete_recipes(trials)
if done.empty:
    st.info("This search has no finished trial yet.")
    st.stop()

objectives = [c.removeprefix("value.") for c in done.columns if c.startswith("value.")]
metric = st.selectbox(
    "Quality measure", objectives, index=objectives.index("ppl") if "ppl" in objectives else 0, key="quant.metric"
)
done[metric] = done[f"value.{metric}"]
st.plotly_chart(
    figures.spread_figure(
        done,
        x="rotation",
        y=metric,
        color="setting",
        label="seed",
        title=f"Held-out {metric} per rotation kind and bit setting (one point per trial; hover for its seed)",
    ),
    key="quant.spread",
)
st.markdown(
    "**Spread over random rotations**: recipes that differ only in the rotation's seed, "
    "with the held-out perplexity's range over those seeds."
)
st.dataframe(seed_spread(trials), hide_index=True, width="stretch")
with st.expander(f"All trials ({len(trials)})"):
    st.dataframe(trials, hide_index=True, width="stretch")
