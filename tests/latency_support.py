"""Measurement rows of a device with a known latency law, for fitting and dashboard tests (no timing needed)."""

from __future__ import annotations

from typing import Any

import numpy as np

from latency_models.calibration import candidate_pool
from latency_models.features import phase_features
from latency_models.measure import PHASES, phase_shape
from latency_models.protocol import DRIFT_CORRECTED
from search.families.mobilellm_flash.space import default_space

DEVICE, BACKEND = "sim-cpu", "executorch-xnnpack"
PEAKS = {"peak_gflops": 20.0, "bandwidth_gbs": 10.0}


def true_latency_ms(features: dict[str, float]) -> float:
    """A known additive device: per-kind throughputs plus a per-layer cost."""
    return (
        features["ffn_flops"] / 8e9
        + features["attn_proj_flops"] / 6e9
        + (features["attn_score_full_flops"] + features["attn_score_local_flops"]) / 3e9
        + features["head_flops"] / 8e9
        + features["kv_bytes"] / 10e9
    ) * 1000 + 0.01 * (features["n_full"] + features["n_local"] + features["n_skip"])


def simulated_rows(n: int, seed: int = 0, noise: float = 0.02) -> list[dict[str, Any]]:
    """Stable rows (prefill and decode) of ``n`` random candidates, shaped as ``latency_models.cache`` stores
    them, with lognormal run-to-run noise of relative size ``noise``."""
    rng = np.random.default_rng(seed)
    rows = []
    for candidate in candidate_pool(default_space(), n, seed):
        for phase in PHASES:
            median = true_latency_ms(phase_features(candidate.arch, candidate.workload, phase)) * np.exp(
                rng.normal(0, noise)
            )
            rows.append(
                {
                    "arch_hash": candidate.arch.arch_hash(),
                    "architecture": candidate.arch.model_dump(mode="json"),
                    "device": DEVICE,
                    "backend": BACKEND,
                    "phase": phase,
                    "shape": phase_shape(candidate.workload, phase),
                    "stage": "calibration",
                    "median_ms": float(median),
                    "p10_ms": float(median * 0.98),
                    "p90_ms": float(median * 1.03),
                    "cv": 0.02,
                    "n_samples": 15,
                    "samples_ms": [float(median)] * 15,
                    "stable": True,
                    "fingerprint": {"threads": 1},
                    "extra": {},
                }
            )
    return rows


def drifting(rows: list[dict[str, Any]], elasticity: float, seed: int = 0) -> list[dict[str, Any]]:
    """``rows`` as the protocol would store them on a host whose speed wanders: each measured while its drift
    reference ran 0.9-1.45x its baseline, the candidate slowing only ``elasticity`` as much (log-log), and the
    stored latency divided by the reference's drift (exponent 1, ``drift_exponent.FULL``)."""
    rng = np.random.default_rng(seed)
    drifted = []
    for row in rows:
        drift = float(rng.uniform(0.9, 1.45))
        raw = row["median_ms"] * drift**elasticity
        extra = {"timing": DRIFT_CORRECTED, "raw_median_ms": raw, "drift": drift, "drift_exponent": 1.0}
        drifted.append({**row, "median_ms": raw / drift, "extra": extra})
    return drifted
