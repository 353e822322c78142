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


def test_a_device_no_node_offers_is_a_user_error(sqlite_url: str) -> None:
    driver = SearchDriver.start(parse_spec(_spec(device="pixel-9")), sqlite_url)
    with pytest.raises(UserError, match="No Ray node offers the device resource 'hw:pixel-9'"):
        driver.run()
