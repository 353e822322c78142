"""The device actor (Ray resource hw:local-cpu) measures MobileLLM-Flash trials inside a real search."""

from __future__ import annotations

from sqlalchemy import select

from db.models import Measurement, Trial
from db.session import session_scope
from search.driver import SearchDriver
from search.spec import parse_spec


def test_search_measures_candidates_on_the_device_actor(ray_local: None, sqlite_url: str) -> None:
    spec = parse_spec(
        {
            "name": "latency-smoke",
            "family": "mobilellm-flash",
            "options": {
                "backend": "torch-eager",
                "vocab_size": 64,
                "use_cache": False,
                "protocol": {"ci_half_width": 0.5, "time_cap_s": 0.3, "min_time_s": 0.0, "loads": 2},
            },
            "sampler": {"name": "random", "seed": 4},
            "budget": {"trials": 3, "batch_size": 3, "max_concurrency": 1, "max_retries": 1},
            "device": "local-cpu",
        }
    )
    result = SearchDriver.start(spec, sqlite_url).run()
    assert result.finished == 3
    with session_scope(sqlite_url) as session:
        trials = list(session.scalars(select(Trial).where(Trial.search_id == result.search_id)))
        rows = list(session.scalars(select(Measurement).where(Measurement.search_id == result.search_id)))
    complete = [t for t in trials if t.state == "complete"]
    assert complete, [t.error for t in trials]
    for trial in complete:
        assert set(trial.values) == {"params", "prefill_ms", "decode_ms"} and trial.values["decode_ms"] > 0
        mine = [r for r in rows if r.trial_id == trial.id]
        assert sorted(r.phase for r in mine) == ["decode", "prefill"]
        assert all(r.device == "local-cpu" and r.arch_hash == trial.arch_hash and r.stable for r in mine)
    assert all(t.state in ("complete", "invalid") for t in trials), [t.error for t in trials]


RESTARTED_SESSION = """
import ray
from search.executor import connect_ray, device_actor
for _ in range(2):
    connect_ray(None, ["local-cpu"], num_cpus=1)
    print("node", ray.get(device_actor("local-cpu").node.remote(), timeout=60))
    ray.shutdown()
"""


def test_device_actor_handle_is_renewed_in_a_new_ray_session() -> None:
    """Job ids restart in a fresh cluster, so a handle from the old session must not be reused."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", RESTARTED_SESSION], capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("node ") == 2
