"""The device actor (Ray resource hw:local-cpu) measures MobileLLM-Flash trials inside a real search."""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy import select

from db.models import Measurement, Trial
from db.session import session_scope
from search.driver import SearchDriver
from search.spec import parse_spec
from tests.flash_support import candidate


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


def test_the_device_actor_times_what_its_export_workers_exported(ray_local: None, sqlite_url: str) -> None:
    """Under Ray (threads running, so the workers are spawned) the actor only loads and times programs."""
    import ray

    from hilnas.settings import get_settings
    from latency_models.measurer import DeviceMeasurer
    from latency_models.protocol import ProtocolConfig
    from search.executor import device_actor

    protocol = ProtocolConfig(
        ci_half_width=0.5, time_cap_s=0.2, min_repeats=5, min_time_s=0.0, loads=1, drift_reference=False
    )  # the references' own export by workers: test_latency_export_pool
    options = {"vocab_size": 64, "export_workers": 2}
    measurer = DeviceMeasurer(sqlite_url, "local-cpu", "executorch-xnnpack", protocol, family_options=options)
    params = candidate(
        dim=16, n_heads=2, n_kv_heads=1, ffn_dim=[32, 48], attention=["full", "skip"], prefill_len=12, decode_kv_len=16
    )
    rows, from_cache = measurer(params)
    assert not from_cache and sorted(rows) == ["decode", "prefill"]
    actor_pid = int(ray.get(device_actor("local-cpu").__ray_call__.remote(lambda _actor: os.getpid())))
    for phase, row in rows.items():
        extra = row["extra"]
        assert row["stable"] and row["median_ms"] > 0 and extra["max_abs_diff_vs_eager"] < 1e-4
        assert extra["timing_pid"] == actor_pid and extra["export_pid"] not in (actor_pid, os.getpid())
        assert (Path(get_settings().artifact_dir) / "latency" / "trial-1" / f"{phase}.pte").is_file()
    assert measurer(params)[1]  # stored: nothing is measured twice
