"""Simulated programs for the measurement protocol's tests: calls that take a known wall time.

Tests that assert on such times are marked ``timing``: ``make test`` runs them alone, after the parallel
workers have finished, because another worker's load stretches a busy-waiting call by whole scheduler slices.
"""

from __future__ import annotations

import time


def busy_wait_ms(ms: float) -> None:
    """Spin for ``ms`` milliseconds of wall time (spinning, not sleeping: a sleep overshoots by a timer slack)."""
    end = time.perf_counter() + ms / 1000
    while time.perf_counter() < end:
        pass
