"""Quantization: quality per rotation kind and bit setting, and the spread over random rotations."""

from __future__ import annotations

import streamlit as st

from dashboard import ui

st.title("Quantization")
st.caption("SpinQuant-style rotation searches: learned, random Hadamard and no rotation at each bit setting.")
url = ui.open_store()
capability = ui.capability_or_stop(url, "quantization", "Quantization rotation search", "db/models/quantization.py")
ui.raw_tables(url, capability)
