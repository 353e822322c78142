"""``hilnas scaling fit --csv``: a good CSV is fitted and stored; every bad one is one sentence and exit 2."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import plotly.io as pio
import pytest
from scaling_support import run_cli
from sqlalchemy import select

from db.models import ScalingFit
from db.session import session_scope


def law_frame() -> pd.DataFrame:
    """Losses from a known law (multiplicative in diversity) with a little noise."""
    rng = np.random.default_rng(0)
    n = np.repeat([2e4, 6e4, 2e5, 6e5], 6)
    d = np.tile(np.geomspace(1e6, 1e8, 6), 4)
    diversity = rng.uniform(0.3, 0.6, len(n))
    syntheticity = rng.uniform(0.0, 1.0, len(n))
    d_eff = d * diversity**0.7 * np.exp(-0.4 * syntheticity)
    loss = (1.5 + 250 / n**0.33 + 800 / d_eff**0.3) * np.exp(rng.normal(0, 0.002, len(n)))
    return pd.DataFrame({"N": n, "D": d, "loss": loss, "diversity": diversity, "syntheticity": syntheticity})


def test_fit_csv_stores_every_form_with_figures(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    csv = tmp_path / "points.csv"
    law_frame().to_csv(csv, index=False)
    html = tmp_path / "figures"
    code = run_cli(
        ["scaling", "fit", "--csv", str(csv), "--bootstrap", "4", "--html", str(html), "--db-url", db_url], monkeypatch
    )
    assert code == 0, capsys.readouterr().err
    with session_scope(db_url) as session:
        fits = session.scalars(select(ScalingFit).order_by(ScalingFit.id)).all()
        assert [f.form for f in fits] == ["raw", "additive", "multiplicative"]
        by_form = {f.form: f for f in fits}
        assert by_form["multiplicative"].params["gamma"] == pytest.approx(0.7, abs=0.1)
        assert by_form["multiplicative"].metrics["held_out"]["mean_rel_error"] < 0.02
        assert set(by_form["raw"].figures) == {"loglog", "residuals"}
        figure = pio.from_json(by_form["multiplicative"].figures["loglog"])
        assert figure.layout.xaxis.type == "log" and len(figure.data) == 3 * 4  # band, curve, points per size
    assert (html / "multiplicative-loglog.html").is_file()
    assert "held-out" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("mutate", "sentence"),
    [
        (lambda f: f.drop(columns=["loss"]), "lacks the column(s) loss"),
        (lambda f: f.assign(D=f["D"].where(f.index != 3, np.nan)), "missing, NaN or non-numeric D in row 4"),
        (lambda f: f.assign(N=f["N"].where(f.index != 0, -5.0)), "non-positive N (-5) in row 1"),
        (lambda f: f.assign(loss=f["loss"].where(f.index != 2, 0.0)), "non-positive loss (0) in row 3"),
        (lambda f: f.head(4), "has 5 parameters but the data has only 4 points"),
        (lambda f: f[f["N"] == f["N"].min()], "at least two model sizes"),
    ],
)
def test_bad_csv_is_one_sentence_and_exit_2(
    mutate, sentence: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    csv = tmp_path / "bad.csv"
    mutate(law_frame()).to_csv(csv, index=False)
    store = f"sqlite:///{tmp_path / 'store.db'}"
    code = run_cli(
        ["scaling", "fit", "--csv", str(csv), "--form", "raw", "--bootstrap", "0", "--db-url", store], monkeypatch
    )
    err = capsys.readouterr().err
    assert code == 2
    assert sentence in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    with session_scope(store) as session:
        assert session.scalars(select(ScalingFit)).all() == []


def test_fit_needs_exactly_one_source(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    assert run_cli(["scaling", "fit"], monkeypatch) == 2
    assert "exactly one of --csv PATH or --sweep ID" in capsys.readouterr().err
