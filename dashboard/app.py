"""The dashboard's entry point: ``streamlit run dashboard/app.py`` (``hilnas dashboard`` runs it).

Each page is one script under ``views/``; this file only lays out the navigation.
"""

from __future__ import annotations

import streamlit as st

from dashboard.data import store_url
from db.session import redact_url

st.set_page_config(page_title="hilnas", page_icon=":material/hub:", layout="wide")

PAGES = {
    "Results": [
        st.Page("views/searches.py", title="Searches", icon=":material/table_rows:", default=True),
        st.Page("views/pareto.py", title="Pareto explorer", icon=":material/scatter_plot:"),
    ],
    "Models": [
        st.Page("views/latency.py", title="Latency models", icon=":material/speed:"),
        st.Page("views/scaling.py", title="Scaling laws", icon=":material/show_chart:"),
        st.Page("views/quantization.py", title="Quantization", icon=":material/compress:"),
    ],
    "Evaluation": [st.Page("views/judge.py", title="Judge reports", icon=":material/gavel:")],
    "Run": [
        st.Page("views/launch.py", title="Launch", icon=":material/rocket_launch:"),
        st.Page("views/agent_runs.py", title="Agent runs", icon=":material/smart_toy:"),
    ],
}

navigation = st.navigation(PAGES)
st.sidebar.caption(f"Store: `{redact_url(store_url())}`")
navigation.run()
