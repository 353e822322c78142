"""``hilnas latency``: bad input is one sentence and exit 2; a measured architecture is cached."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ARCH = {
    "n_layers": 1,
    "dim": 32,
    "n_heads": 4,
    "n_kv_heads": 2,
    "ffn_dim": [128],
    "attention": ["full"],
    "window": 16,
    "share_embeddings": True,
    "block_repeat": 1,
    "prefill_len": 64,
    "decode_kv_len": 128,
}


def hilnas(*args: str, db: Path) -> subprocess.CompletedProcess:
    env = os.environ | {
        "COLUMNS": "200",
        "HILNAS_DB_URL": f"sqlite:///{db}",
        "HILNAS_ARTIFACT_DIR": str(db.parent / "runs"),
    }
    command = [sys.executable, "-c", "from hilnas.cli import main; main()", *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["measure", "no-such-arch.yaml"], "No spec file 'no-such-arch.yaml'"),
        (["measure", "{arch}", "--backend", "tflite"], "Unknown latency backend 'tflite'"),
        (["measure", "{bad_heads}"], "cannot be built: 6 heads do not divide the model dimension 32"),
        (["measure", "{bad_window}"], "cannot be built: window 512 is larger than the context (129 tokens)"),
        (["measure", "{zdt1}"], "searches family 'moo-benchmark'; latency measurement needs 'mobilellm-flash'"),
        (["report"], "No latency predictors are stored"),
    ],
)
def test_bad_input_is_one_sentence_and_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    files = {
        "arch": ARCH,
        "bad_heads": ARCH | {"n_heads": 6},
        "bad_window": ARCH | {"window": 512, "attention": ["local"]},
    }
    paths = {}
    for name, data in files.items():
        paths[name] = tmp_path / f"{name}.json"
        paths[name].write_text(json.dumps(data))
    paths["zdt1"] = "zdt1"
    result = hilnas("latency", *[a.format(**paths) for a in args], db=tmp_path / "store.db")
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr


def test_measure_arch_in_process_then_served_from_cache(tmp_path: Path) -> None:
    arch = tmp_path / "arch.yaml"
    arch.write_text(json.dumps(ARCH))
    db = tmp_path / "store.db"
    # A loose precision target: the test checks the plumbing, not this shared machine's steadiness.
    command = ["latency", "measure", str(arch), "--backend", "torch-eager", "--in-process", "--device", "cpu"]
    command += ["--ci-half-width", "0.5", "--loads", "2", "--min-time", "0"]
    first = hilnas(*command, db=db)
    assert first.returncode == 0, first.stdout + first.stderr
    assert first.stdout.count("measured") == 2
    second = hilnas(*command, db=db)
    assert second.returncode == 0 and second.stdout.count("cache") == 2

    from latency_models import cache

    rows = cache.load(f"sqlite:///{db}", "cpu", "torch-eager")
    assert sorted(r["phase"] for r in rows) == ["decode", "prefill"]
    assert [len(r["extra"]["load_medians_ms"]) for r in rows] == [2, 2]  # timed over the two loads asked for


def test_calibrate_in_process_then_report(tmp_path: Path) -> None:
    db = tmp_path / "store.db"
    command = ["latency", "calibrate", "--device", "cpu", "--budget", "4", "--pool", "12", "--noise", "2"]
    command += ["--backend", "torch-eager", "--in-process", "--ci-half-width", "0.5", "--loads", "2", "--min-time", "0"]
    calibrated = hilnas(*command, db=db)
    assert calibrated.returncode == 0, calibrated.stdout + calibrated.stderr
    assert "Device peaks:" in calibrated.stdout

    from latency_models import storage
    from latency_models.predictors import PREDICTORS

    records = storage.list_predictors(f"sqlite:///{db}", "cpu")
    assert len(records) == 2 * len(PREDICTORS) and sum(r["selected"] for r in records) == 2
    assert all(r["n_measurements"] == 4 and r["metrics"]["noise_floor"]["n"] == 2 for r in records)
    reported = hilnas("latency", "report", "--device", "cpu", db=db)
    assert reported.returncode == 0, reported.stderr
    for name in PREDICTORS:
        assert reported.stdout.count(name) == 2  # one row per phase
    assert reported.stdout.count("no cache knee") == 2  # four rows are too few to try one
