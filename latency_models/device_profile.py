"""Peak compute and memory bandwidth of the measuring device, the roofline predictor's ceilings.

Both are measured with the same protocol as candidates, at the same thread count: a square
float32 matmul (FLOP/s) and a large tensor copy (bytes read + written per second).
"""

from __future__ import annotations

import torch

from latency_models.protocol import ProtocolConfig, time_once

MATMUL_SIZE = 512
COPY_FLOATS = 16 * 1024 * 1024  # 64 MiB: far beyond any last-level cache


def measure_peaks(protocol: ProtocolConfig) -> dict[str, float]:
    """{"peak_gflops", "bandwidth_gbs"} of this machine at ``protocol.threads`` threads."""
    previous = torch.get_num_threads()
    torch.set_num_threads(protocol.threads)
    try:
        a, b = torch.randn(MATMUL_SIZE, MATMUL_SIZE), torch.randn(MATMUL_SIZE, MATMUL_SIZE)
        matmul = time_once(lambda: torch.mm(a, b), protocol)
        source, target = torch.randn(COPY_FLOATS), torch.empty(COPY_FLOATS)
        copy = time_once(lambda: target.copy_(source), protocol)
    finally:
        torch.set_num_threads(previous)
    return {
        "peak_gflops": 2 * MATMUL_SIZE**3 / (matmul.median_ms / 1000) / 1e9,
        "bandwidth_gbs": 2 * 4 * COPY_FLOATS / (copy.median_ms / 1000) / 1e9,
    }
