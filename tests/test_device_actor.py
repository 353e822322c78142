"""Latency work goes through the device's actor, which measures one candidate at a time."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from db.models import Trial
from db.session import session_scope
from hilnas.errors import UserError
from search.driver import SearchDriver
from search.spec import parse_spec

pytestmark = pytest.mark.usefixtures("ray_local")


def _spec(device: str | None = None) -> dict:
    return {
        "name": "device",
        "family": "moo-benchmark",
        "options": {"problem": "zdt1", "n_var": 2, "device_ms": 150},
        "objectives": [{"name": "f1"}, {"name": "f2"}],
        "constraints": [{"metric": "device_ms", "max": 10_000}],
        "budget": {"trials": 8, "batch_size": 8, "max_concurrency": 4},
        "device": device,
    }


def test_device_measures_one_candidate_at_a_time(sqlite_url: str) -> None:
    result = SearchDriver.start(parse_spec(_spec()), sqlite_url).run()
    with session_scope(sqlite_url) as session:
        trials = list(session.scalars(select(Trial).where(Trial.search_id == result.search_id)))
    windows = sorted((t.metrics["device_start"], t.metrics["device_end"]) for t in trials)
    assert len(windows) == 8
    for (_, end), (next_start, _) in zip(windows, windows[1:], strict=False):
        assert next_start >= end  # four trials in flight, yet no two measurements overlapped
    assert all(t.metrics["device_ms"] >= 150 for t in trials)


def _windows(db_url: str, search_id: int, kind: str) -> list[tuple[float, float]]:
    with session_scope(db_url) as session:
        trials = session.scalars(select(Trial).where(Trial.search_id == search_id, Trial.state == "complete"))
        return [(t.metrics[f"{kind}_start"], t.metrics[f"{kind}_end"]) for t in trials]


@pytest.mark.parametrize("alone", [True, False])
def test_measure_alone_measures_only_while_nothing_trains(sqlite_url: str, alone: bool) -> None:
    """With the device on the training machine, a measurement next to training measures the neighbour too."""
    spec = _spec()
    spec["options"] |= {"work_ms": 300, "device_ms": 60}
    spec["budget"] |= {"measure_alone": alone, "batch_size": 4, "max_concurrency": 2}
    result = SearchDriver.start(parse_spec(spec), sqlite_url).run()
    work, device = _windows(sqlite_url, result.search_id, "work"), _windows(sqlite_url, result.search_id, "device")
    assert len(work) == len(device) == 8
    overlaps = [(d, w) for d in device for w in work if d[0] < w[1] and w[0] < d[1]]
    if alone:
        assert overlaps == []
    else:
        assert overlaps, "without measure_alone, measurements run beside training (what this option prevents)"


def test_a_device_no_node_offers_is_a_user_error(sqlite_url: str) -> None:
    driver = SearchDriver.start(parse_spec(_spec(device="pixel-9")), sqlite_url)
    with pytest.raises(UserError, match="No Ray node offers the device resource 'hw:pixel-9'"):
        driver.run()
