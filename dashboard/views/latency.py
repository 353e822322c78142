"""Latency models: parity plots, error histograms, held-out metrics per predictor and phase, noise floor."""

from __future__ import annotations

import pandas as pd
import plotly.express as px
import streamlit as st

from dashboard import data, figures, ui

st.title("Latency models")
st.caption("How well each learned latency predictor matches device measurements it was not trained on.")
url = ui.open_store()
ui.capability_or_stop(url, "latency", "Latency prediction", "db/models/latency.py")

records = data.table_frame(url, "latency", "hilnas_latency_predictors")
if records.empty:
    st.info("No latency predictor has been fitted yet (run a calibration stage).")
else:
    rows = []
    for record in records.itertuples():
        for split, scores in (record.metrics or {}).items():
            rows.append(
                {
                    "id": record.id,
                    "device": record.device,
                    "backend": record.backend,
                    "phase": record.phase,
                    "predictor": record.name,
                    "selected": record.selected,
                    "split": split,
                    **{k: scores.get(k) for k in ("mape", "rmspe", "within_5", "within_10", "kendall_tau", "n")},
                }
            )
    scores = pd.DataFrame(rows)
    keys = sorted({(r.device, r.backend) for r in records.itertuples()})
    device, backend = st.selectbox(
        "Device and backend", keys, format_func=lambda k: f"{k[0]} · {k[1]}", key="latency.device"
    )
    shown = scores[(scores["device"] == device) & (scores["backend"] == backend)]
    # The newest fit of each predictor and phase; older refits stay in the table below.
    newest = shown[shown["id"] == shown.groupby(["phase", "predictor"])["id"].transform("max")]
    predictors = newest[newest["split"] != "noise_floor"]
    noise = newest[newest["split"] == "noise_floor"].drop_duplicates("phase")
    figure = px.bar(
        predictors,
        x="predictor",
        y="mape",
        color="split",
        barmode="group",
        facet_col="phase",
        labels={"mape": "MAPE (%)"},
        title="Held-out error per predictor and phase (lower is better)",
    )
    for phase_index, phase in enumerate(sorted(predictors["phase"].unique()), start=1):
        floor = noise[noise["phase"] == phase]
        if not floor.empty:
            figure.add_hline(
                y=float(floor["mape"].iloc[0]),
                line_dash="dot",
                annotation_text="noise floor",
                row=1,
                col=phase_index,
            )
    st.plotly_chart(figure, key="latency.bars")
    st.markdown(
        "**Held-out metrics** (random split: cross-validation or a held-out sample; out-of-range: larger "
        "architectures than any trained on; noise floor: re-measuring the same architecture)"
    )
    st.dataframe(
        newest.drop(columns=["device", "backend"]).sort_values(["phase", "split", "mape"]),
        hide_index=True,
        width="stretch",
        column_config={
            "within_5": st.column_config.NumberColumn(format="percent"),
            "within_10": st.column_config.NumberColumn(format="percent"),
        },
    )
    with st.expander(f"All fitted predictors ({len(records)})"):
        st.dataframe(records.drop(columns=["metrics"]), hide_index=True, width="stretch")

st.subheader("Predicted vs measured on the device")
verified = data.verified_latency(url)
if verified.empty:
    st.caption(
        "No verified points yet: no device measurement in the store carries a predictor's estimate "
        "(the verification stage stores it as `predicted_ms`)."
    )
else:
    left, right = st.columns(2)
    with left:
        st.plotly_chart(
            figures.parity_figure(verified, "measured_ms", "predicted_ms", color="phase", low="p10_ms", high="p90_ms"),
            key="latency.parity",
        )
    with right:
        st.plotly_chart(
            figures.histogram_figure(verified, "error_pct", color="phase", title="Relative error (%)"),
            key="latency.errors",
        )

profiles = data.table_frame(url, "latency", "hilnas_device_profiles")
with st.expander(f"Device profiles ({len(profiles)})"):
    st.dataframe(profiles, hide_index=True, width="stretch")
