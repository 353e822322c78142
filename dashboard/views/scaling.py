"""Scaling laws: log-log fits with confidence bands, residuals, constants with CIs, raw D vs effective D."""

from __future__ import annotations

import pandas as pd
import plotly.io as pio
import streamlit as st

from dashboard import data, ui

st.title("Scaling laws")
st.caption("Loss as a function of parameters N and effective training tokens D_eff, fitted Chinchilla-style.")
url = ui.open_store()
ui.capability_or_stop(url, "scaling", "Scaling-law fitting", "db/models/scaling.py")

fits = data.table_frame(url, "scaling", "hilnas_scaling_fits")
if fits.empty:
    st.info("No scaling law has been fitted yet (`hilnas scaling fit`).")
    st.stop()

fits = fits.assign(group=fits["sweep_id"].map(lambda s: f"sweep {s}" if pd.notna(s) else "") + " " + fits["source"])
group = st.selectbox("Data the laws were fitted on", list(dict.fromkeys(fits["group"])), key="scaling.group")
same_data = fits[fits["group"] == group]


def held_out(metrics: dict, key: str) -> float | None:
    return (metrics.get("held_out") or {}).get(key)


comparison = pd.DataFrame(
    {
        "fit": same_data["id"],
        "form": same_data["form"],
        "points": same_data["n_points"],
        "pearson": [m.get("pearson") for m in same_data["metrics"]],
        "spearman": [m.get("spearman") for m in same_data["metrics"]],
        **{
            f"held-out {k}": [held_out(m, k) for m in same_data["metrics"]]
            for k in sorted({k for m in same_data["metrics"] for k in (m.get("held_out") or {})})
        },
        "fit seconds": same_data["fit_seconds"],
    }
)
st.markdown("**Raw D against effective D**: every form fitted on the same runs (the `raw` form uses tokens as seen)")
st.dataframe(comparison, hide_index=True, width="stretch")

forms = list(same_data["form"])
form = st.selectbox("Law", forms, index=next((i for i, f in enumerate(forms) if f != "raw"), 0), key="scaling.form")
fit = same_data[same_data["form"] == form].iloc[0]

constants = pd.DataFrame(
    {
        "constant": list(fit["params"]),
        "value": list(fit["params"].values()),
        "95% CI low": [fit["intervals"].get(k, [None, None])[0] for k in fit["params"]],
        "95% CI high": [fit["intervals"].get(k, [None, None])[1] for k in fit["params"]],
    }
)
left, right = st.columns([2, 3])
with left:
    st.markdown("**Constants** (bootstrap confidence intervals)")
    st.dataframe(constants, hide_index=True, width="stretch")
with right:
    st.markdown("**Fit quality**")
    st.json(
        {k: v for k, v in fit["metrics"].items() if k not in ("params", "intervals")},
        expanded=True,
    )

stored_figures = fit["figures"] or {}
shown = [name for name in ("loglog", "residuals") if name in stored_figures]
columns = st.columns(max(len(shown), 1))
for column, name in zip(columns, shown, strict=False):
    with column:
        st.plotly_chart(pio.from_json(stored_figures[name]), key=f"scaling.{name}")
raw = same_data[same_data["form"] == "raw"]
if form != "raw" and not raw.empty and "loglog" in (raw.iloc[0]["figures"] or {}):
    with st.expander("The raw-token law on the same runs, for comparison"):
        st.plotly_chart(pio.from_json(raw.iloc[0]["figures"]["loglog"]), key="scaling.raw")

datasets = data.table_frame(url, "scaling", "hilnas_scaling_datasets")
with st.expander(f"Datasets and their quality indicators ({len(datasets)})"):
    if not datasets.empty:
        indicators = pd.json_normalize(list(datasets["indicators"])).add_prefix("indicator.")
        st.dataframe(
            pd.concat([datasets[["id", "name", "kind", "n_tokens", "unique_tokens"]], indicators], axis=1),
            hide_index=True,
            width="stretch",
        )
