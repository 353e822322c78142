"""Judge reports: per-requirement verdicts with evidence, the prerequisite graph, I/D metrics and the mode."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard import data, figures, ui

st.title("Judge reports")
st.caption("Agent-as-a-Judge verdicts on DevAI-style tasks and on this platform's own runs.")
url = ui.open_store()
ui.capability_or_stop(url, "judge", "The Agent-as-a-Judge", "db/models/judge.py")

runs = data.table_frame(url, "judge", "hilnas_judge_runs")
if runs.empty:
    st.info("No judging run in the store yet (`hilnas judge ...`).")
    st.stop()


def percent(value: float | None) -> str:
    return "n/a" if value is None or pd.isna(value) else f"{value:.0%}"


overview = pd.concat(
    [
        runs[["id", "kind", "task_name", "mode", "model", "n_satisfied", "n_unsatisfied", "n_error", "created_at"]],
        pd.json_normalize(list(runs["metrics"])),
    ],
    axis=1,
)
st.dataframe(overview, hide_index=True, width="stretch")

labels = {int(r.id): f"#{r.id} {r.task_name} ({r.kind}, {r.mode})" for r in runs.itertuples()}
run_id = st.selectbox("Report", list(labels), format_func=labels.get, key="judge.run")
run = runs.set_index("id").loc[run_id]
metrics = run["metrics"] or {}

mode = "offline: deterministic evidence checks, no LLM" if run["mode"] == "offline" else f"LLM `{run['model']}`"
st.markdown(f"**{run['task_name']}** · subject `{run['subject']}` · mode {mode}")
cells = st.columns(5)
cells[0].metric("I (met independently)", percent(metrics.get("I")))
cells[1].metric("D (met with prerequisites)", percent(metrics.get("D")))
cells[2].metric("Task solve rate", percent(metrics.get("solved")))
cells[3].metric("Satisfied / unsatisfied / error", f"{run['n_satisfied']} / {run['n_unsatisfied']} / {run['n_error']}")
cells[4].metric("Cost", f"${run['cost_usd']:.4f}" if pd.notna(run["cost_usd"]) else "n/a")
if "agreement" in metrics:
    st.caption(
        f"Alignment with human labels: agreement {metrics['agreement']:.0%}, kappa {metrics.get('kappa')}, "
        f"on {metrics.get('n_compared')} requirements."
    )

verdicts = data.judge_verdicts(url, run_id)
st.subheader("Prerequisite graph")
st.plotly_chart(figures.requirement_graph_figure(verdicts), key="judge.graph")

st.subheader("Verdicts")
for verdict in verdicts.itertuples():
    icon = {"satisfied": ":material/check_circle:", "unsatisfied": ":material/cancel:"}.get(
        verdict.verdict, ":material/warning:"
    )
    needs = f" · needs {', '.join(f'R{p}' for p in verdict.prerequisites)}" if verdict.prerequisites else ""
    with st.expander(f"R{verdict.requirement_id}: {verdict.criteria[:110]}{needs}", icon=icon):
        st.markdown(f"**{verdict.verdict}** (decided by {verdict.decided_by}) — {verdict.justification}")
        for evidence in verdict.evidence or []:
            where = f"{evidence.get('path')}:{evidence.get('start_line')}-{evidence.get('end_line')}"
            st.caption(f"{where} {evidence.get('note') or ''}")
            if evidence.get("excerpt"):
                st.code(evidence["excerpt"], language="text")

with st.expander("Full report (Markdown)"):
    st.markdown(run["report_markdown"])
st.download_button(
    "Download the HTML report", run["report_html"], file_name=f"judge-{run_id}.html", mime="text/html", key="judge.html"
)
