"""A device actor that crashes mid-measurement is re-created by Ray and the search goes on."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from db.models import Trial
from db.session import session_scope
from search.driver import SearchDriver
from search.spec import parse_spec

pytestmark = pytest.mark.usefixtures("ray_local")


def test_a_crashed_device_actor_is_recreated(sqlite_url: str) -> None:
    faults = [
        {"kind": "device_crash", "trials": [1], "attempts": 1},  # crashes once, then measures
        {"kind": "device_crash", "trials": [3], "attempts": 9},  # crashes on every attempt
    ]
    spec = parse_spec(
        {
            "name": "device-crash",
            "family": "moo-benchmark",
            "options": {"problem": "zdt1", "n_var": 2, "device_ms": 50, "faults": faults},
            "sampler": {"name": "random", "seed": 0},
            "budget": {"trials": 6, "batch_size": 2, "max_concurrency": 1, "max_retries": 1},
        }
    )
    result = SearchDriver.start(spec, sqlite_url).run()
    with session_scope(sqlite_url) as session:
        trials = {t.number: t for t in session.scalars(select(Trial).where(Trial.search_id == result.search_id))}
    assert result.finished == 6 and result.failed == 1
    assert trials[1].state == "complete" and trials[1].attempts == 2
    assert trials[3].state == "failed" and trials[3].attempts == 2
    assert "stopped mid-measurement" in trials[3].error and "'hw:local-cpu'" in trials[3].error
    # Each crash left a new actor process behind it: the measuring pid changed after trial 1 and after trial 3.
    pids = [trials[n].device_node.rsplit(":", 1)[1] for n in (0, 2, 4)]
    assert len(set(pids)) == 3
    assert all(t.metrics["device_ms"] >= 50 for t in trials.values() if t.state == "complete")
