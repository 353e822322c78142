"""Launch: build a validated spec from a registered family and submit it here or to a Ray cluster.

Nothing typed here is run: the form's values become a spec that pydantic validates, the spec is
written to a file, and a fixed command (`hilnas search run <file>`) runs it.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import pandas as pd
import streamlit as st
import yaml

from dashboard import data, forms, launch
from hilnas.errors import UserError
from hilnas.settings import get_settings
from search.registry import available_families, create_family, family_class
from search.spec import BudgetSpec, SamplerSpec

LOCAL = "This machine"
CLUSTER = "Ray cluster (Jobs API)"

st.title("Launch a search")
settings = get_settings()
url = data.store_url()
launch_dir = settings.artifact_dir / "launches"


def yaml_mapping(text: str, what: str) -> dict:
    """YAML typed into the form, as a mapping; a problem is a one-sentence ``UserError``."""
    try:
        value = yaml.safe_load(text) if text.strip() else {}
    except yaml.YAMLError as exc:
        raise UserError(f"The {what} is not valid YAML: {str(exc).splitlines()[0]}.") from exc
    if not isinstance(value, dict):
        raise UserError(f"The {what} must be a YAML mapping.")
    return value


def form_spec() -> tuple[dict | None, str | None]:
    """The spec the form describes (as data), or the sentence saying what is wrong with it."""
    family_name = st.selectbox("Family", available_families(), key="launch.family")
    cls = family_class(family_name)
    if cls.description:
        st.caption(cls.description)
    name = st.text_input("Search name", value=f"{family_name}-{datetime.now(UTC):%Y%m%d-%H%M}", key="launch.name")
    try:
        with st.expander("Family options", expanded=True):
            options = forms.model_widgets(cls.Options, key=f"launch.options.{family_name}")
            advanced = forms.unrendered_fields(cls.Options)
            if advanced:
                extra = st.text_area(
                    f"More options as YAML ({', '.join(advanced)})", key=f"launch.options_yaml.{family_name}"
                )
                options.update(yaml_mapping(extra, "options YAML"))
        family = create_family(family_name, options)
    except UserError as exc:
        return None, str(exc)

    defaults = family.default_objectives()
    directions = {o.name: o.direction for o in defaults}
    objectives = st.multiselect(
        "Objectives",
        list(directions),
        default=list(directions),
        format_func=lambda n: f"{n} ({directions[n]})",
        key=f"launch.objectives.{family_name}",
    )
    with st.expander("Constraints", expanded=False):
        constraints = st.data_editor(
            pd.DataFrame(
                {"metric": pd.Series(dtype=str), "min": pd.Series(dtype=float), "max": pd.Series(dtype=float)}
            ),
            num_rows="dynamic",
            column_config={
                "metric": st.column_config.SelectboxColumn("metric", options=list(directions), required=True),
                "min": st.column_config.NumberColumn("min"),
                "max": st.column_config.NumberColumn("max"),
            },
            key=f"launch.constraints.{family_name}",
        )
    with st.expander("Search space", expanded=False):
        default_space = yaml.safe_dump(family.default_space().model_dump(mode="json", exclude_none=True))
        # Keyed by the default itself: options that change the default space (e.g. n_var) start a fresh editor.
        space_text = st.text_area(
            "Space (YAML); leave as is for the family's default",
            value=default_space,
            height=200,
            key=f"launch.space.{family_name}.{hashlib.sha1(default_space.encode()).hexdigest()[:10]}",
        )
    st.markdown("**Sampler**")
    sampler = forms.model_widgets(SamplerSpec, key="launch.sampler")
    st.markdown("**Budget**")
    budget = forms.model_widgets(BudgetSpec, key="launch.budget")
    device = st.text_input("Measuring device", value=settings.device, key="launch.device")

    spec: dict = {
        "name": name,
        "family": family_name,
        "options": options,
        "objectives": [{"name": o, "direction": directions[o]} for o in objectives] or None,
        "constraints": [
            {k: row[k] for k in ("metric", "min", "max") if pd.notna(row[k])}
            for row in constraints.to_dict("records")
            if pd.notna(row["metric"])
        ],
        "sampler": sampler,
        "budget": budget,
        "device": device or None,
    }
    try:
        if space_text.strip() != default_space.strip():
            spec["space"] = yaml_mapping(space_text, "search space")
    except UserError as exc:
        return None, str(exc)
    return spec, None


spec_data, problem = form_spec()
spec = None
if problem is None:
    try:
        spec = launch.build_spec(spec_data)
    except UserError as exc:
        problem = str(exc)
if spec is None:
    st.error(problem)
else:
    with st.expander("Validated spec", expanded=False):
        st.code(yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False), language="yaml")

st.divider()
target = st.radio("Run on", [LOCAL, CLUSTER], horizontal=True, key="launch.target")
if target == LOCAL:
    where = f"Ray at `{settings.ray_address}`" if settings.ray_address else "a local Ray instance"
    st.caption(f"Runs `hilnas search run` as a subprocess of the dashboard, on {where}.")
elif settings.ray_jobs_address:
    st.caption(f"Submits a Ray job to `{settings.ray_jobs_address}` (HILNAS_RAY_JOBS_ADDRESS).")
else:
    st.info("No cluster is configured: set HILNAS_RAY_JOBS_ADDRESS (e.g. http://head:8265) and restart.")

cluster_ready = target == LOCAL or bool(settings.ray_jobs_address)
if st.button("Launch", type="primary", disabled=spec is None or not cluster_ready, key="launch.submit"):
    try:
        if target == LOCAL:
            job_id = launch.launch_local(spec, url, settings.ray_address, launch_dir).job_id
        else:
            job_id = launch.submit_ray_job(spec, settings.ray_jobs_address, url, settings.artifact_dir, launch_dir)
    except UserError as exc:
        st.error(str(exc))
    else:
        st.session_state.setdefault("launch.jobs", []).insert(0, (target, job_id, spec.name))
        st.success(f"Submitted {spec.name!r} as job `{job_id}`.")

jobs = st.session_state.get("launch.jobs", [])


def job_state(kind: str, job_id: str) -> tuple[str, str]:
    if kind == LOCAL:
        job = launch.local_job(job_id)
        return (job.status(), job.logs()) if job else ("UNKNOWN (the dashboard restarted)", "")
    try:
        return launch.ray_job_state(settings.ray_jobs_address, job_id)
    except UserError as exc:
        return f"UNREACHABLE ({exc})", ""
    except RuntimeError as exc:  # the Jobs API answers an unknown id with a RuntimeError
        return f"UNKNOWN ({str(exc).splitlines()[0]})", ""


def stop(kind: str, job_id: str) -> None:
    if kind == LOCAL:
        job = launch.local_job(job_id)
        if job is not None:
            job.stop()
    else:
        launch.stop_ray_job(settings.ray_jobs_address, job_id)


@st.fragment(run_every=3 if jobs else None)
def job_panel() -> None:
    if not jobs:
        return
    st.subheader("Jobs submitted from this session")
    for kind, job_id, name in jobs:
        status, logs = job_state(kind, job_id)
        with st.container(border=True):
            head, button = st.columns([5, 1])
            head.markdown(f"**{name}** · `{job_id}` · {kind} · status **{status}**")
            if not launch.is_terminal(status):
                button.button("Stop", key=f"launch.stop.{job_id}", on_click=stop, args=(kind, job_id))
            st.code(logs[-4000:] or "(no output yet)", language="text")


job_panel()

if settings.ray_jobs_address:
    with st.expander("Every search job the dashboard submitted to the cluster"):
        try:
            cluster_jobs = launch.dashboard_jobs(settings.ray_jobs_address)
        except UserError as exc:
            st.warning(str(exc))
        else:
            st.dataframe(
                pd.DataFrame(
                    cluster_jobs, columns=["job", "status", "search", "family", "started", "ended", "message"]
                ),
                hide_index=True,
                width="stretch",
            )
