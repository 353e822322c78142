"""Backends: ExecuTorch/XNNPACK graphs match eager, export failures name the operator, missing runtime."""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

import pytest
import torch

from hilnas.errors import UserError
from latency_models.backends import ExportFailure, get_backend
from latency_models.measure import PHASES, build_model, measure_architecture
from latency_models.protocol import ProtocolConfig
from search.families.mobilellm_flash.space import ArchConfig, LayerConfig, Workload

torch.set_num_threads(1)
FAST = ProtocolConfig(time_cap_s=0.3, min_repeats=5, max_repeats=50, ci_half_width=0.5, attempts=1, min_time_s=0.0)


def small_arch() -> ArchConfig:
    layers = [LayerConfig(attention="full", n_heads=4, n_kv_heads=2, ffn_dim=64), LayerConfig(attention="local")]
    return ArchConfig(vocab_size=128, dim=32, head_dim=8, layers=layers, window=8, share_embeddings=False)


def test_executorch_graphs_match_eager_and_produce_rows(tmp_path: Path) -> None:
    workload = Workload(prefill_len=20, decode_kv_len=24)
    results = measure_architecture(small_arch(), workload, get_backend("executorch-xnnpack"), "cpu", FAST, tmp_path)
    assert set(results) == set(PHASES)
    for phase, result in results.items():
        row = result.row
        assert result.prepared.artifact is not None and result.prepared.artifact.stat().st_size > 0
        assert row["extra"]["max_abs_diff_vs_eager"] < 1e-4
        assert row["backend"] == "executorch-xnnpack" and row["phase"] == phase
        assert row["p10_ms"] <= row["median_ms"] <= row["p90_ms"] and row["n_samples"] == len(row["samples_ms"])
        assert row["fingerprint"]["threads"] == 1 and "executorch_version" in row["fingerprint"]
        # Timed over FAST.loads separate loads of the program; a reload computes the same outputs.
        assert len(row["extra"]["load_medians_ms"]) == FAST.loads
        assert row["median_ms"] == pytest.approx(statistics.median(row["extra"]["load_medians_ms"]))
        assert all(torch.equal(a, b) for a, b in zip(result.prepared.reload()(), result.prepared.run(), strict=True))
    assert results["prefill"].row["shape"] == {"prefill_len": 20}
    assert results["decode"].row["shape"] == {"decode_kv_len": 24}


def test_exported_decode_continues_the_exported_prefill(tmp_path: Path) -> None:
    """The two graphs chain like on a phone: prefill's cache feeds decode and matches eager generation."""
    from executorch.runtime import Runtime

    arch, workload = small_arch(), Workload(prefill_len=10, decode_kv_len=10)
    model = build_model(arch)
    backend = get_backend("executorch-xnnpack")
    tokens = torch.randint(0, 128, (1, 11))
    from latency_models.measure import example_inputs, phase_graph

    prefill = backend.prepare(
        phase_graph(model, "prefill"), example_inputs(model, workload, "prefill"), "prefill", tmp_path
    )
    decode = backend.prepare(
        phase_graph(model, "decode"), example_inputs(model, workload, "decode"), "decode", tmp_path
    )
    assert prefill.artifact and decode.artifact
    runtime = Runtime.get()
    prefill_out = runtime.load_program(prefill.artifact).load_method("forward").execute([tokens[:, :10]])
    decode_out = (
        runtime.load_program(decode.artifact)
        .load_method("forward")
        .execute([tokens[:, 10:], torch.tensor([10]), *prefill_out[1:]])
    )
    with torch.no_grad():
        expected = model(tokens)[:, 10]
    assert torch.allclose(decode_out[0], expected, atol=1e-4)


def test_torch_eager_backend_measures(tmp_path: Path) -> None:
    results = measure_architecture(
        small_arch(), Workload(prefill_len=8, decode_kv_len=8), get_backend("torch-eager"), "cpu", FAST, tmp_path
    )
    assert all(r.row["median_ms"] > 0 and r.prepared.artifact is None for r in results.values())


def test_export_failure_names_the_operator(tmp_path: Path) -> None:
    class Eigenvalues(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.linalg.eigh(x @ x.T)[0]

    with pytest.raises(ExportFailure, match="at operator aten::_linalg_eigh") as caught:
        get_backend("executorch-xnnpack").prepare(Eigenvalues(), (torch.randn(4, 4),), "prefill", tmp_path)
    assert caught.value.operator == "aten::_linalg_eigh.eigenvalues"


def test_missing_executorch_names_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "executorch.exir", None)  # as if the package were not installed
    with pytest.raises(UserError, match="pip install 'executorch"):
        get_backend("executorch-xnnpack")


def test_unknown_backend_is_a_user_error() -> None:
    with pytest.raises(UserError, match="Unknown latency backend 'tflite'"):
        get_backend("tflite")
