"""The latency benchmark's measuring order (held-out visits spread over the calibration) and its start."""

import numpy as np
import pytest

from benchmarks.latency_model import MIN_REVISIT_GAP, load_references, visit_schedule
from latency_models.backends import get_backend
from latency_models.calibration import candidate_pool
from latency_models.protocol import ProtocolConfig
from search.families.mobilellm_flash.space import default_space


def test_every_visit_is_scheduled_once_and_each_revisit_comes_well_after_its_first():
    candidates = candidate_pool(default_space(), 30, seed=0)
    visited, revisited = candidates[:30], candidates[:20]
    n_calibration = 40
    slots = visit_schedule(n_calibration, visited, revisited, np.random.default_rng(1))
    assert len(slots) == n_calibration + 1
    order = [(visit.candidate.key, visit.again) for slot in slots for visit in slot]
    assert sorted(order) == sorted([(c.key, False) for c in visited] + [(c.key, True) for c in revisited])
    slot_of = {(visit.candidate.key, visit.again): i for i, slot in enumerate(slots) for visit in slot}
    for candidate in revisited:
        first, again = slot_of[(candidate.key, False)], slot_of[(candidate.key, True)]
        assert again - first >= MIN_REVISIT_GAP * n_calibration - 1  # slots are calibration steps
    # spread over the whole calibration, not bunched at one end: each third of it holds some first visits
    firsts = sorted(slot_of[(c.key, False)] for c in visited)
    assert all(
        any(lo <= s < lo + n_calibration / 3 for s in firsts) for lo in (0, n_calibration / 3, 2 * n_calibration / 3)
    )


def test_a_revisited_held_out_row_is_labelled_with_the_geometric_mean_of_its_two_visits():
    from benchmarks.latency_model import Measurements, held_out_labels

    rows = [{"phase": "decode", "median_ms": ms, "extra": {"timing": "raw"}} for ms in (1.0, 2.0, 3.0)]
    measurements = Measurements(
        calibration=[],
        held_out=[*rows, {"phase": "prefill", "median_ms": 1.0, "extra": {"timing": "raw"}}],
        out_of_range=[],
        noise={"decode": [(2.0, 2.0), (1.0, 1.21)], "prefill": []},  # the 3.0 ms row was not re-measured
        peaks={},
        costs=[],
        drifts=[],
        reference_baselines_ms={},
    )
    labelled = held_out_labels(measurements, "decode", exponent=1.0)
    assert [round(row["median_ms"], 6) for row in labelled] == [1.1, 2.0, 3.0]  # the last: its one visit
    assert [row.get("visits") for row in labelled] == [2, 2, None]
    assert [row["median_ms"] for row in held_out_labels(measurements, "prefill", exponent=1.0)] == [1.0]


def test_a_drift_reference_that_cannot_be_built_stops_the_run_with_one_sentence():
    # Before, the run went on and every candidate then failed on its own (KeyError on the missing reference).
    with pytest.raises(SystemExit) as stopped:
        load_references(["decode-3m", "prefill"], get_backend("torch-eager"), ProtocolConfig(), None, 0)
    message = str(stopped.value)
    assert message.startswith("The decode-3m drift reference could not be built (ValueError: no drift reference")
    assert message.endswith("; nothing was measured.") and message.count(".") == 1 and "\n" not in message
