"""Calibrating a device end to end: its peaks, a designed sample of measurements, the noise floor, the fits.

``hilnas latency calibrate`` is a thin shell around ``calibrate_device``; the pieces
(``measure_noise_floors`` especially) are reusable by any stage that measures through a
``DeviceMeasurer``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from latency_models import storage
from latency_models.calibration import PredictorReport, calibrate, candidate_pool
from latency_models.fitting import fit_and_store
from latency_models.measure import PHASES
from latency_models.measurer import DeviceMeasurer
from latency_models.metrics import noise_floor
from latency_models.protocol import timing_label
from search.families.mobilellm_flash.space import SpaceOptions, default_space
from search.space import SearchSpace


def measure_noise_floors(
    measurer: DeviceMeasurer, candidates: list[dict[str, Any]]
) -> dict[str, dict[str, float] | None]:
    """Per phase, the accuracy of predicting each stored measurement by measuring it again.

    Needs at least two already-measured candidates; the re-measurements are not stored (the
    cache keeps the first). None per phase when there are too few candidates.
    """
    if len(candidates) < 2:
        return dict.fromkeys(PHASES)
    first = [measurer(params)[0] for params in candidates]
    again = [measurer(params, use_cache=False)[0] for params in candidates]
    return {
        phase: noise_floor(
            np.array([row[phase]["median_ms"] for row in first]), np.array([row[phase]["median_ms"] for row in again])
        )
        for phase in PHASES
    }


@dataclass
class DeviceCalibration:
    """What one calibration did: the device's peaks, the fitted reports per phase, skipped candidates."""

    peaks: dict[str, float]
    reports: dict[str, list[PredictorReport]]
    noise_floors: dict[str, dict[str, float] | None]
    measured: int
    failures: list[str] = field(default_factory=list)


def calibrate_device(
    measurer: DeviceMeasurer,
    *,
    budget: int,
    initial: int | None = None,
    pool_size: int = 400,
    noise: int = 4,
    seed: int = 0,
    space: SearchSpace | None = None,
    space_options: SpaceOptions | None = None,
    on_step: Callable[[int, int], None] | None = None,
) -> DeviceCalibration:
    """Profile the device, measure ``budget`` designed candidates, re-measure ``noise`` of them, fit and store.

    The predictors are fitted on every stable cached row of the device and backend, so an earlier
    calibration's measurements count too.
    """
    profile = measurer.profile()
    peaks = profile["peaks"]
    storage.save_profile(measurer.db_url, measurer.device, measurer.protocol.threads, peaks, profile["fingerprint"])
    pool = candidate_pool(space or default_space(), pool_size, seed, space_options)
    result = calibrate(
        pool,
        lambda candidate: measurer(candidate.params)[0],
        budget,
        initial or max(2, budget // 2),
        seed,
        on_step=on_step,
    )
    floors = measure_noise_floors(measurer, [pool[i].params for i in result.measured[:noise]])
    reports = fit_and_store(
        measurer.db_url,
        device=measurer.device,
        backend=measurer.backend.name,
        peaks=peaks,
        noise_floors=floors,
        timing=timing_label(measurer.protocol),
    )
    return DeviceCalibration(peaks, reports, floors, len(result.measured), result.failures)
