"""Every dashboard page runs (Streamlit's AppTest) against a store seeded by real searches, on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import plotly.io
import pytest
from streamlit.testing.v1 import AppTest

from dashboard import data, figures
from db.models import Artifact, Measurement, Trial
from db.session import session_scope
from hilnas.settings import get_settings
from latency_models.predictors import cache_knee, describe_cache_knee
from search.driver import SearchDriver
from search.recorder import SearchRecorder, TrialOutcome
from search.spec import SearchSpec, parse_spec
from tests.latency_support import BACKEND, DEVICE, PEAKS, simulated_rows
from tests.quant_support import save_tiny_checkpoint

APP = str(Path(__file__).resolve().parent.parent / "dashboard" / "app.py")
PAGES = ["views/searches.py", "views/pareto.py", "views/latency.py", "views/scaling.py", "views/quantization.py"]
PAGES += ["views/judge.py", "views/launch.py"]
TIMEOUT_S = 60


def small_search(problem: str, n_obj: int, trials: int, seed: int) -> SearchSpec:
    """A few trials of a benchmark problem; a generous reference point so early random points count."""
    return parse_spec(
        {
            "name": f"{problem}-small",
            "family": "moo-benchmark",
            "options": {"problem": problem, "n_obj": n_obj, "n_var": n_obj + 1},
            "objectives": [{"name": f"f{i + 1}", "reference": 12.0} for i in range(n_obj)],
            "sampler": {"name": "nsga2", "seed": seed, "population_size": 4},
            "budget": {"trials": trials, "batch_size": 4, "max_concurrency": 2},
        }
    )


def add_verified_measurement(db_url: str, search_id: int, number: int, artifact_path: Path) -> None:
    """A device measurement with a predictor's estimate and an exported file for one trial.

    The benchmark family measures no latency, so these rows are written the way the verification
    stage writes them, to exercise the predicted-vs-measured plot, the spread and the download.
    """
    artifact_path.write_bytes(b"PTE-test-bytes")
    with session_scope(db_url) as session:
        trial = session.query(Trial).filter_by(search_id=search_id, number=number).one()
        samples = [10.0, 10.4, 9.8, 10.1, 10.9]
        session.add(
            Measurement(
                search_id=search_id,
                trial_id=trial.id,
                arch_hash=f"arch-{number}",
                architecture={"x0": 0.5},
                device="local-cpu",
                backend="executorch-xnnpack",
                phase="decode",
                shape={"tokens": 1},
                shape_key='{"tokens":1}',
                stage="verification",
                median_ms=10.1,
                p10_ms=9.8,
                p90_ms=10.9,
                cv=0.04,
                n_samples=len(samples),
                samples_ms=samples,
                fingerprint={"threads": 1},
                extra={
                    "predicted_ms": 9.5,
                    "raw_median_ms": 11.3,
                    "reference_ms": 0.224,
                    "drift": 1.12,
                    "reference_program": "mobilellm-decode-d128-l2-v2048-kv128",
                },
            )
        )
        trial.arch_hash = f"arch-{number}"
        session.add(
            Artifact(
                search_id=search_id,
                trial_id=trial.id,
                kind="pte",
                path=str(artifact_path),
                sha256="0" * 64,
                size_bytes=artifact_path.stat().st_size,
            )
        )


def add_capability_results(db_url: str, search_id: int, latency_fits: dict) -> None:
    """One row set per capability, written by their writers (predictors) or shaped as they store them."""
    from db.models import JudgeRun, JudgeVerdict, ScalingFit
    from latency_models.fitting import store_predictors
    from latency_models.metrics import accuracy

    floors = {"prefill": accuracy(np.array([1.0, 2.0]), np.array([1.02, 1.98])), "decode": None}
    store_predictors(db_url, device=DEVICE, backend=BACKEND, reports=latency_fits, noise_floors=floors)
    loglog = go.Figure(go.Scatter(x=[1e6, 1e7], y=[3.2, 2.9], name="N=1e5")).update_xaxes(type="log")
    with session_scope(db_url) as session:
        for form in ("raw", "compression"):
            session.add(
                ScalingFit(
                    source="runs.csv",
                    form=form,
                    n_points=24,
                    params={"E": 1.7, "A": 400.0, "alpha": 0.34, "B": 410.0, "beta": 0.28},
                    intervals={"E": [1.6, 1.8], "alpha": [0.3, 0.38]},
                    metrics={"pearson": 0.99, "spearman": 0.98, "held_out": {"relative_error": 0.03}},
                    figures={"loglog": loglog.to_json(), "residuals": loglog.to_json()},
                    fit_seconds=0.4,
                )
            )
        run = JudgeRun(
            kind="search",
            task_name="zdt1 search",
            subject=f"search {search_id}",
            search_id=search_id,
            mode="offline",
            requirement_set={},
            n_satisfied=1,
            n_unsatisfied=1,
            n_error=0,
            metrics={"I": 0.5, "D": 0.5, "solved": 0.0, "undecided": 0},
            elapsed_s=0.1,
            report_markdown="# Judge report",
            report_html="<h1>Judge report</h1>",
        )
        run.verdicts = [
            JudgeVerdict(
                requirement_id=0,
                criteria="The search finishes its budget.",
                prerequisites=[],
                verdict="satisfied",
                decided_by="offline",
                justification="12 of 12 trials finished.",
                evidence=[{"path": "store", "start_line": 1, "end_line": 1, "excerpt": "finished", "note": ""}],
                elapsed_s=0.0,
            ),
            JudgeVerdict(
                requirement_id=1,
                criteria="The front reaches the true hypervolume.",
                prerequisites=[0],
                verdict="unsatisfied",
                decided_by="offline",
                justification="Too few trials.",
                evidence=[],
                elapsed_s=0.0,
            ),
        ]
        session.add(run)


@pytest.fixture(scope="module")
def latency_fits() -> dict:
    """Every predictor fitted on simulated rows of a known device, once per module (fitting is the slow part)."""
    from latency_models.fitting import fit_predictors

    return fit_predictors(simulated_rows(8, seed=5), DEVICE, BACKEND, PEAKS)


def rotation_search(model_path: Path) -> SearchSpec:
    """A real quant-rotation search on a tiny model: two rotation kinds, two bit settings, several seeds."""
    save_tiny_checkpoint(model_path)
    return parse_spec(
        {
            "name": "rotations",
            "family": "quant-rotation",
            "options": {"model": str(model_path), "seq_len": 16, "calibration_sequences": 2, "heldout_sequences": 2},
            "space": {
                "params": {
                    "rotation": {"type": "categorical", "choices": ["none", "random_hadamard"]},
                    "seed": {"type": "int", "low": 0, "high": 3},
                    "w_bits": {"type": "categorical", "choices": [4]},
                    "a_bits": {"type": "categorical", "choices": [4, 8]},
                    "kv_bits": {"type": "categorical", "choices": [16]},
                }
            },
            "sampler": {"name": "random", "seed": 0},
            "budget": {"trials": 8, "batch_size": 4, "max_concurrency": 2, "max_retries": 0},
        }
    )


@pytest.fixture
def seeded_store(
    db_url: str, ray_local: None, latency_fits: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> dict:
    """Three finished searches run by the real driver (ZDT1, 2 objectives; DTLZ2, 3 objectives; a rotation
    search) and the other capabilities' results."""
    monkeypatch.setenv("HILNAS_DB_URL", db_url)
    get_settings.cache_clear()
    zdt1 = SearchDriver.start(small_search("zdt1", 2, 12, 1), db_url).run()
    dtlz2 = SearchDriver.start(small_search("dtlz2", 3, 8, 2), db_url).run()
    rotations = SearchDriver.start(rotation_search(tmp_path / "tiny.pt"), db_url).run()
    with session_scope(db_url) as session:
        front = session.query(Trial.number).filter_by(search_id=zdt1.search_id, is_pareto=True).first()
    add_verified_measurement(db_url, zdt1.search_id, front.number, tmp_path / "front.pte")
    add_capability_results(db_url, zdt1.search_id, latency_fits)
    data.clear_caches()
    return {
        "url": db_url,
        "zdt1": zdt1.search_id,
        "dtlz2": dtlz2.search_id,
        "rotations": rotations.search_id,
        "front_trial": front.number,
    }


def run_page(page: str) -> AppTest:
    app = AppTest.from_file(APP, default_timeout=TIMEOUT_S).run()
    assert not app.exception, app.exception
    app.switch_page(page).run()
    return app


def test_every_page_runs_and_shows_the_store(seeded_store: dict) -> None:
    for page in PAGES:
        app = run_page(page)
        assert not app.exception, f"{page}: {app.exception}"
        assert app.title, f"{page} shows no title"

    app = run_page("views/searches.py")
    table = app.dataframe[0].value
    assert set(table["id"]) == {seeded_store["zdt1"], seeded_store["dtlz2"], seeded_store["rotations"]}
    zdt1 = table.set_index("id").loc[seeded_store["zdt1"]]
    assert (zdt1["finished"], zdt1["target"], zdt1["status"]) == (12, 12, "finished")
    assert zdt1["progress"] == pytest.approx(1.0)
    assert zdt1["hypervolume"] > 0

    # Capabilities with results show them.
    scaling = run_page("views/scaling.py")
    assert scaling.get("plotly_chart") and len(scaling.dataframe) >= 2, "no scaling fit shown"
    judge = run_page("views/judge.py")
    assert judge.get("plotly_chart") and len(judge.expander) >= 2, "no prerequisite graph or verdicts"


def chart(app: AppTest, key: str) -> go.Figure:
    """The plotly figure of the chart with this widget key, as the page sent it."""
    for element in app.get("plotly_chart"):
        if element.proto.id and key in element.proto.id:
            return plotly.io.from_json(element.proto.spec)
    raise AssertionError(f"no chart {key!r}; charts: {[e.proto.id for e in app.get('plotly_chart')]}")


def values(array: object) -> list:
    """A trace's data array: plotly sends numeric arrays base64-encoded (``{"bdata", "dtype"}``)."""
    if isinstance(array, dict):
        return np.frombuffer(base64.b64decode(array["bdata"]), dtype=array["dtype"]).tolist()
    return list(array)


def test_latency_page_plots_held_out_points_of_each_predictor(seeded_store: dict, latency_fits: dict) -> None:
    app = run_page("views/latency.py")
    chart(app, "latency.bars")
    chart(app, "latency.parity")  # the verified point keeps its own parity plot
    drift = chart(app, "latency.drift")["data"][0]
    assert values(drift["y"]) == [1.12]  # the reference ran 12% slow
    assert "mobilellm-decode-d128-l2-v2048-kv128" in drift["name"]  # marked by the program it timed
    # Each phase says which drift exponent its predictors were fitted at (these rows carry no drift: dividing).
    exponents = [c.value for c in app.caption if "drift exponent" in c.value]
    assert sorted(line.split(":")[0] for line in exponents) == sorted(latency_fits)
    assert all("0 drift-corrected rows" in line for line in exponents)
    # ... and which cache knee the selected predictor took (as its stored fit says).
    knees = {c.value.split(":")[0]: c.value for c in app.caption if "cache knee" in c.value}
    for phase, reports in latency_fits.items():
        knee = cache_knee(next(r for r in reports if r.selected).predictor)
        assert knees[phase] == describe_cache_knee(phase, knee)
    for phase, reports in latency_fits.items():
        selected = next(r for r in reports if r.selected)
        # The predictor chosen by cross-validation is shown first, with every one of its held-out points.
        assert app.selectbox(key=f"latency.heldout.{phase}").value == selected.name
        parity = chart(app, f"latency.heldout.parity.{phase}")
        by_split = {trace.name: trace for trace in parity.data if trace.name != "y = x"}
        assert set(by_split) == {"random", "out_of_range"}
        for split, trace in by_split.items():
            expected = [p for p in selected.held_out if p["split"] == split]
            assert sorted(values(trace.x)) == pytest.approx(sorted(p["measured_ms"] for p in expected))
            assert sorted(values(trace.y)) == pytest.approx(sorted(p["predicted_ms"] for p in expected))
        errors = chart(app, f"latency.heldout.errors.{phase}")
        assert sum(len(values(trace.x)) for trace in errors.data) == len(selected.held_out)
    # Any other predictor can be opened instead.
    app.selectbox(key="latency.heldout.decode").set_value("roofline").run()
    assert not app.exception, app.exception
    roofline = next(r for r in latency_fits["decode"] if r.name == "roofline")
    parity = chart(app, "latency.heldout.parity.decode")
    assert parity.layout.title.text == "decode: roofline"
    assert sum(len(values(t.x)) for t in parity.data if t.name != "y = x") == len(roofline.held_out)


def test_quantization_page_shows_quality_per_rotation_and_spread_over_seeds(seeded_store: dict) -> None:
    from search.queries import trials_frame

    trials = trials_frame(seeded_store["rotations"], seeded_store["url"])
    complete = trials[trials["state"] == "complete"]
    assert len(complete) == 8
    app = run_page("views/quantization.py")
    assert app.selectbox(key="quant.search").value == seeded_store["rotations"]
    boxes = chart(app, "quant.spread").data
    assert {box.name for box in boxes} == {f"W4A{a}" for a in complete["param.a_bits"]}
    assert all(box.type == "box" and box.boxpoints == "all" for box in boxes)
    # One point per finished trial, at its rotation kind, with its seed on hover.
    shown = [
        (x, float(y), int(seed))
        for box in boxes
        for x, y, seed in zip(values(box.x), values(box.y), values(box.text), strict=True)
    ]
    stored = zip(complete["param.rotation"], complete["value.ppl"].astype(float), complete["param.seed"], strict=True)
    assert sorted(shown) == sorted(stored)
    table = app.dataframe[0].value
    assert table["seeds"].sum() == 8 and (table["min"] <= table["max"]).all()


def test_pareto_explorer_front_trial_detail_comparison_and_3d(seeded_store: dict) -> None:
    app = run_page("views/pareto.py")
    app.selectbox(key="pareto.search").set_value(seeded_store["zdt1"]).run()
    assert not app.exception, app.exception
    charts = app.get("plotly_chart")
    assert len(charts) >= 3  # the front, the hypervolume history, predicted vs measured
    assert not any("No verified points" in c.value for c in app.caption)
    # Open the trial that has a measurement: its spread and its artifact download appear.
    app.selectbox(key="pareto.trial").set_value((seeded_store["zdt1"], seeded_store["front_trial"])).run()
    assert not app.exception, app.exception
    markdown = " ".join(m.value for m in app.markdown)
    assert f"trial {seeded_store['front_trial']}" in markdown
    assert any("front.pte" in button.proto.label for button in app.get("download_button"))
    # Compare with the 3-objective search on its shared objectives f1, f2.
    app.selectbox(key="pareto.compare").set_value(seeded_store["dtlz2"]).run()
    assert not app.exception, app.exception
    assert not app.warning, [w.value for w in app.warning]
    # A 3-objective search opens in 3D on all its objectives.
    app.selectbox(key="pareto.compare").set_value(None).run()
    app.selectbox(key="pareto.search").set_value(seeded_store["dtlz2"]).run()
    assert not app.exception, app.exception
    assert app.multiselect(key=f"pareto.axes.{seeded_store['dtlz2']}").value == ["f1", "f2", "f3"]


def test_front_mask_follows_directions_and_skips_missing_values() -> None:
    frame = pd.DataFrame({"loss": [1.0, 2.0, 3.0, 0.5, np.nan], "acc": [0.5, 0.9, 0.95, 0.1, 1.0]})
    # Minimise loss, maximise accuracy: (0.5, 0.1), (1, 0.5), (2, 0.9), (3, 0.95) all trade off.
    assert figures.front_mask(frame, ["loss", "acc"], ["minimize", "maximize"]).tolist() == [1, 1, 1, 1, 0]
    # Minimising both, only the lowest loss with the lowest accuracy survives.
    assert figures.front_mask(frame, ["loss", "acc"], ["minimize", "minimize"]).tolist() == [0, 0, 0, 1, 0]


def test_layer_pattern_shows_every_layer_value() -> None:
    params = {"n_layers": 4, "attention": ["full", "local", "skip", "full"], "ffn_dim": [256, 512, 512, 1024]}
    heatmap = figures.layer_pattern_figure(params).data[0]
    assert list(heatmap.y) == ["attention", "ffn_dim"]
    assert [list(row) for row in heatmap.text] == [["full", "local", "skip", "full"], ["256", "512", "512", "1024"]]
    assert figures.layer_pattern_figure({"x0": 0.5}) is None


def test_searches_page_refreshes_live_while_a_search_runs(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HILNAS_DB_URL", sqlite_url)
    get_settings.cache_clear()
    recorder = SearchRecorder.create_search(sqlite_url, small_search("zdt1", 2, 10, 0))
    recorder.set_status("running")
    recorder.add_running([(0, {"x0": 0.1, "x1": 0.2, "x2": 0.3}, None), (1, {"x0": 0.5, "x1": 0.5, "x2": 0.5}, None)])
    recorder.finish([TrialOutcome(0, "failed", 3, error="RuntimeError: injected fault\ntraceback")])
    app = run_page("views/searches.py")
    assert app.toggle(key="searches.live").value  # on by default while a search runs
    row = app.dataframe[0].value.iloc[0]
    assert (row["status"], row["finished"], row["running"], row["failed"]) == ("running", 1, 1, 1)
    failures = app.dataframe[-1].value
    assert list(failures["error"]) == ["RuntimeError: injected fault"]
