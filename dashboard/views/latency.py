"""Latency models: parity plots, error histograms, held-out metrics per predictor and phase, noise floor."""

from __future__ import annotations

import pandas as pd
import plotly.express as px
import streamlit as st

from dashboard import data, figures, ui
from latency_models.drift_exponent import describe
from latency_models.predictors import describe_cache_knee

SCORE_KEYS = ("mape", "rmspe", "p90_ape", "within_5", "within_10", "kendall_tau", "n")


def held_out_plots(phase: str, points: pd.DataFrame) -> None:
    """Parity plot and error histogram of one phase's held-out points, for a predictor the user picks
    (the one chosen by cross-validation first)."""
    names = sorted(points["predictor"].unique())
    selected = set(points.loc[points["selected"], "predictor"])
    name = st.selectbox(
        f"{phase} predictor",
        names,
        index=next((i for i, n in enumerate(names) if n in selected), 0),
        format_func=lambda n: f"{n} (selected)" if n in selected else n,
        key=f"latency.heldout.{phase}",
    )
    shown = points[points["predictor"] == name]
    st.plotly_chart(
        figures.parity_figure(shown, "measured_ms", "predicted_ms", color="split", title=f"{phase}: {name}"),
        key=f"latency.heldout.parity.{phase}",
    )
    st.plotly_chart(
        figures.histogram_figure(shown, "error_pct", color="split", title=f"{phase}: relative error (%)"),
        key=f"latency.heldout.errors.{phase}",
    )


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
            if not scores or "mape" not in scores:  # no noise floor measured for this fit, or not a split
                continue
            rows.append(
                {
                    "id": record.id,
                    "device": record.device,
                    "backend": record.backend,
                    "phase": record.phase,
                    "predictor": record.name,
                    "selected": record.selected,
                    "split": split,
                    **{k: scores.get(k) for k in SCORE_KEYS},
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
    newest_selected = records[
        (records["device"] == device) & (records["backend"] == backend) & records["selected"].astype(bool)
    ].sort_values("id")
    for record in newest_selected.drop_duplicates("phase", keep="last").itertuples():
        st.caption(describe(record.phase, (record.metrics or {}).get("drift_exponent")))
        if "cache_knee" in (record.metrics or {}):  # absent from predictors stored before the knee existed
            st.caption(describe_cache_knee(record.phase, record.metrics["cache_knee"]))
    with st.expander(f"All fitted predictors ({len(records)})"):
        st.dataframe(records.drop(columns=["metrics", "held_out"], errors="ignore"), hide_index=True, width="stretch")

    st.subheader("Held-out predictions")
    points = data.held_out_points(url, device, backend)
    if points.empty:
        st.caption(
            "These predictors were stored without their per-point held-out predictions (fitted before they "
            "were recorded); fit again with `hilnas latency calibrate` to plot them."
        )
    else:
        st.caption(
            "Each point was predicted by a model that never saw it: random split = cross-validation or a held-out "
            "sample; out-of-range = architectures larger than any the model was fitted on."
        )
        phases = sorted(points["phase"].unique())
        for phase, column in zip(phases, st.columns(len(phases)), strict=True):
            with column:
                held_out_plots(phase, points[points["phase"] == phase])

st.subheader("Verified points: predicted vs measured on the device")
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

st.subheader("Device drift")
drift = data.device_drift(url)
if drift.empty:
    st.caption("No drift-corrected measurement yet (the protocol's `drift_reference` was off, or none was taken).")
else:
    st.caption(
        "Blocks of a fixed reference program are timed between blocks of each candidate; its time over its stored "
        "baseline shows how much slower (above 1) or faster the device ran while measuring. Latencies are "
        "corrected by it. Prefill graphs and decode steps each have a reference of their own."
    )
    st.plotly_chart(
        px.scatter(
            drift,
            x="measured_at",
            y="drift",
            color="device",
            symbol="reference",
            labels={"drift": "reference time / baseline", "measured_at": "measured at"},
        ),
        key="latency.drift",
    )

profiles = data.table_frame(url, "latency", "hilnas_device_profiles")
with st.expander(f"Device profiles ({len(profiles)})"):
    st.dataframe(profiles, hide_index=True, width="stretch")
