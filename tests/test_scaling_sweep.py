"""A tiny sweep trains on real Ray, stores datasets with indicators, runs and loss points, and can be fitted."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scaling_support import run_cli
from sqlalchemy import select

from db.models import ScalingDataset, ScalingFit, ScalingRun, ScalingSweep
from db.session import session_scope
from hilnas.errors import UserError
from hilnas.settings import get_settings
from search.scaling.spec import load_sweep_spec, parse_sweep_spec
from search.scaling.store import sweep_data
from search.scaling.sweep import natural_subset, run_sweep
from search.scaling.training import ModelSize, TrainSettings, train_with_cooldowns

TINY = {
    "name": "tiny",
    "sizes": [{"dim": 16, "layers": 1}, {"dim": 32, "layers": 1}],
    "token_budget": 4096,
    "checkpoints": 2,
    "smallest_fraction": 0.5,
    "datasets": [
        {"name": "natural", "kind": "natural"},
        {"name": "mix", "kind": "mixture", "synthetic_fraction": 0.5},
        {"name": "repeated", "kind": "repeated", "unique_tokens": 2048},
    ],
    "teacher": {"size": {"dim": 16, "layers": 1}, "tokens": 2048},
    "training": {"seq_len": 32, "batch_size": 8, "warmup_steps": 2, "eval_windows": 16},
    "corpus": {"modules": ["json/*.py", "textwrap.py", "argparse.py"], "validation_fraction": 0.2},
    "quality_windows": 4,
}


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HILNAS_CACHE_DIR", str(tmp_path / "cache"))
    get_settings.cache_clear()
    return tmp_path / "cache"


def test_sweep_stores_runs_points_and_indicators(
    db_url: str, ray_local: None, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = parse_sweep_spec(TINY)
    sweep_id = run_sweep(spec, db_url, say=lambda _line: None)
    with session_scope(db_url) as session:
        assert session.get(ScalingSweep, sweep_id).status == "finished"
        runs = session.scalars(select(ScalingRun).where(ScalingRun.sweep_id == sweep_id)).all()
        assert len(runs) == 2 * 3 and {r.status for r in runs} == {"complete"}
        assert all(sorted(p.tokens for p in r.points) == [2048, 4096] for r in runs)
        assert {r.lr for r in runs} == {spec.training.lr_for(s) for s in spec.sizes}
        datasets = {d.kind: d for d in session.scalars(select(ScalingDataset)).all()}
        assert datasets["natural"].indicators["syntheticity"] == 0.0
        assert datasets["repeated"].unique_tokens == 2048
        assert set(datasets["mixture"].indicators) >= {"diversity", "distinct_2", "teacher_nll", "syntheticity"}
        assert datasets["mixture"].indicator_cost["sample_bytes"] > 0
    data = sweep_data(db_url, sweep_id)
    assert len(data) == 12 and len(data.sizes) == 2
    assert np.all(data.loss < np.log(256)) and data.diversity is not None and data.unique_tokens is not None
    assert (cache_dir / "teachers").is_dir() and (cache_dir / "corpora").is_dir()

    # The CLI fits the stored sweep; with two sizes the held-out fit (one size left) cannot be made and says so.
    assert (
        run_cli(
            ["scaling", "fit", "--sweep", str(sweep_id), "--form", "raw", "--bootstrap", "2", "--db-url", db_url],
            monkeypatch,
        )
        == 0
    )
    with session_scope(db_url) as session:
        (fit,) = session.scalars(select(ScalingFit)).all()
        assert fit.sweep_id == sweep_id and fit.n_points == 12
        assert "at least two model sizes" in fit.metrics["held_out"]["failure"]


def test_checkpoints_follow_cooldown_branches() -> None:
    settings = TrainSettings(seq_len=16, batch_size=4, warmup_steps=2, eval_windows=4)
    stream = np.frombuffer(b"abcdefgh " * 400, dtype=np.uint8)
    points, model = train_with_cooldowns(ModelSize(dim=16, layers=1), stream, stream, [640, 1280, 5000], settings)
    assert [p.tokens for p in points] == [640, 1280, 5056]  # rounded up to whole steps of 64 tokens
    assert points[-1].loss < points[0].loss < np.log(256)  # a periodic text is learned quickly
    assert model.config.vocab_size == 256


def test_bad_sweep_specs_are_one_sentence() -> None:
    with pytest.raises(UserError, match="synthetic_fraction is required"):
        parse_sweep_spec({**TINY, "datasets": [{"name": "m", "kind": "mixture"}]})
    with pytest.raises(UserError, match="sizes"):
        parse_sweep_spec({**TINY, "sizes": [{"dim": 16, "layers": 1}]})
    with pytest.raises(UserError, match="built-ins: mini, quick"):
        load_sweep_spec("no-such-spec")
    with pytest.raises(UserError, match="No scaling sweep with id 99"):
        sweep_data(None, 99)


def test_sweep_cli_rejects_an_unknown_spec(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    assert run_cli(["scaling", "sweep", "no-such-spec"], monkeypatch) == 2
    err = capsys.readouterr().err
    assert "no built-in spec of that name" in err and len(err.strip().splitlines()) == 1


def test_natural_subsets_are_spread_over_the_corpus() -> None:
    natural = np.random.default_rng(0).integers(0, 256, 40 * 4096, dtype=np.uint8)
    subset = natural_subset(natural, 3 * 4096 + 100, seed=1)
    assert len(subset) == 3 * 4096 + 100
    chunks = natural.reshape(40, 4096)
    # Every piece of the subset is a whole chunk of the corpus, in corpus order, and not just its prefix.
    sources = [int(np.flatnonzero((chunks[:, :100] == subset[i * 4096 : i * 4096 + 100]).all(1))[0]) for i in range(4)]
    assert np.array_equal(subset[: 3 * 4096], chunks[sources[:3]].reshape(-1))
    assert sources == sorted(sources) and sources != [0, 1, 2, 3]
