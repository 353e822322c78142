"""Pieces several pages share: opening the store, picking a search, and gating capability pages."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard import data
from db.session import redact_url
from hilnas.errors import UserError


def open_store() -> str:
    """The store URL once it is reachable and holds the core tables; otherwise explain and stop the page."""
    url = data.store_url()
    try:
        tables = data.table_names(url)
    except UserError as exc:
        st.error(str(exc))
        st.stop()
    missing = [t for t in data.CORE_TABLES if t not in tables]
    if missing:
        st.warning(
            f"The store at `{redact_url(url)}` has no hilnas tables yet ({', '.join(missing)} missing): "
            "run a search (or `hilnas db upgrade`) first."
        )
        st.stop()
    return url


def search_label(row: pd.Series) -> str:
    return f"#{row['id']} {row['name']} ({row['family']}, {row['status']})"


def pick_search(searches: pd.DataFrame, label: str, key: str, exclude: int | None = None) -> int | None:
    """A selectbox over the searches (newest first); None when there is nothing to pick."""
    choices = searches[searches["id"] != exclude] if exclude is not None else searches
    if choices.empty:
        return None
    labels = {int(row["id"]): search_label(row) for _, row in choices.iterrows()}
    return st.selectbox(label, list(labels), format_func=labels.get, key=key)


def capability_or_stop(url: str, area: str, title: str, source: str) -> data.Capability:
    """The capability's table status; the page stops with a plain sentence unless it has data."""
    status = data.capability(url, area)
    if not status.built:
        st.info(f"{title} is not built yet: this installation has no `{source}` tables, so there is nothing to show.")
        st.stop()
    if status.missing_in_store:
        st.warning(
            f"The store at `{redact_url(url)}` lacks the {title.lower()} tables "
            f"({', '.join(status.missing_in_store)}); run `hilnas db upgrade` to add them."
        )
        st.stop()
    if not status.has_data:
        st.info(f"No {title.lower()} results in the store yet (tables {', '.join(status.tables)} are empty).")
        st.stop()
    return status
