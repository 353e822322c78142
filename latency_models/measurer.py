"""Measuring candidates on a device, cache first, through the device's Ray actor.

The standalone ``hilnas latency`` commands and the staged pipelines use this; they are their own
single writer of the store. With ``in_process`` the candidate is measured in this process instead
(no Ray), which is only faithful when this process runs on the device. MobileLLM-Flash is the
default family; another family (EdgeTAM) names itself and says under which keys its rows are cached.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported lazily: the ``hilnas`` CLI imports this module at start-up
    from latency_models.protocol import ProtocolConfig

FAMILY = "mobilellm-flash"
#: A candidate's parameters to {phase: (architecture hash, shape)}: the cache keys of the rows it measures to.
CacheKeys = Callable[[dict[str, Any]], dict[str, tuple[str, dict[str, Any]]]]


def _profile_here(backend_name: str, protocol: dict[str, Any], measured_on: str) -> dict[str, Any]:
    """Peak compute and bandwidth of this machine, and its fingerprint (where the candidates run)."""
    from latency_models.backends import get_backend
    from latency_models.device_profile import measure_peaks
    from latency_models.protocol import ProtocolConfig, machine_fingerprint

    config = ProtocolConfig.model_validate(protocol)
    fingerprint = machine_fingerprint(get_backend(backend_name).versions(), config)
    return {"peaks": measure_peaks(config), "fingerprint": {**fingerprint, "measured_on": measured_on}}


def _profile_in_actor(actor: Any, backend_name: str, protocol: dict[str, Any]) -> dict[str, Any]:
    """``_profile_here`` run inside the device actor (by Ray's ``__ray_call__``)."""
    return _profile_here(backend_name, protocol, actor.node())


def profile_device(actor: Any | None, backend_name: str, protocol: ProtocolConfig) -> dict[str, Any]:
    """{"peaks": {"peak_gflops", "bandwidth_gbs"}, "fingerprint": {...}} of the device, measured where its
    candidates are measured: inside ``actor`` (a ``search.executor.DeviceActor`` handle; the call queues
    behind its measurements, so it never overlaps one), or in this process when ``actor`` is None.
    The fingerprint's ``measured_on`` names the node and process that measured.

    Ray's ``__ray_call__`` runs a function on any actor, so the actor needs no method of its own for this.
    """
    if actor is None:
        return _profile_here(backend_name, protocol.model_dump(), f"{socket.gethostname()}:in-process:{os.getpid()}")
    import ray

    return ray.get(actor.__ray_call__.remote(_profile_in_actor, backend_name, protocol.model_dump()))


class DeviceMeasurer:
    """Measures candidates through the device's Ray actor (or in this process), cache first."""

    def __init__(
        self,
        db_url: str,
        device: str,
        backend: str,
        protocol: ProtocolConfig,
        *,
        in_process: bool = False,
        address: str | None = None,
        stage: str = "measure",
        family_options: dict[str, Any] | None = None,
        family: str = FAMILY,
        cache_keys: CacheKeys | None = None,
    ) -> None:
        """``family``'s options get ``backend``, ``protocol`` and ``use_cache`` (off: the cache is read here);
        ``cache_keys`` is required for a family other than MobileLLM-Flash."""
        from latency_models.backends import get_backend
        from search.registry import create_family

        self.db_url, self.device, self.in_process, self.stage = db_url, device, in_process, stage
        self.protocol = protocol
        self.options = {
            **(family_options or {}),
            "backend": backend,
            "protocol": protocol.model_dump(),
            "use_cache": False,
        }
        if family != FAMILY and cache_keys is None:
            raise ValueError(f"measuring {family!r} candidates needs their cache keys")
        self.family_name, self.cache_keys = family, cache_keys or self._flash_keys
        self.family = create_family(family, self.options)
        self.backend = get_backend(backend)  # fails early, with the package to install, if it is missing
        self.actor = None
        if not in_process:
            from search import executor

            executor.connect_ray(address, [device])
            executor.require_device(device)
            self.actor = executor.device_actor(device)
        self.counter = 0

    def __call__(self, params: dict[str, Any], use_cache: bool = True) -> tuple[dict[str, dict], bool]:
        """Rows per phase and whether they all came from the cache; fresh rows are saved
        (unless ``use_cache`` is off: a re-measurement for the noise floor is not stored)."""
        from latency_models import cache
        from latency_models.protocol import timing_label

        if use_cache:
            cached = {
                phase: cache.lookup(
                    self.db_url, arch_hash, self.device, self.backend.name, phase, shape, timing_label(self.protocol)
                )
                for phase, (arch_hash, shape) in self.cache_keys(params).items()
            }
            if all(row is not None for row in cached.values()):
                return cached, True
        evaluation = self._measure(params)
        rows = {row["phase"]: {**row, "stage": self.stage} for row in evaluation.measurements}
        if use_cache:
            cache.save(self.db_url, list(rows.values()))
        return rows, False

    def _flash_keys(self, params: dict[str, Any]) -> dict[str, tuple[str, dict[str, Any]]]:
        from latency_models.measure import PHASES, phase_shape

        arch, workload = self.family.candidate(params)
        return {phase: (arch.arch_hash(), phase_shape(workload, phase)) for phase in PHASES}

    def profile(self) -> dict[str, Any]:
        """The device's peaks and fingerprint, measured in its actor (or here when in-process)."""
        return profile_device(self.actor, self.backend.name, self.protocol)

    def _measure(self, params: dict[str, Any]):  # noqa: ANN202 - an Evaluation
        from hilnas.settings import get_settings
        from search.family import TrialContext

        self.counter += 1
        context = TrialContext(0, self.counter, 1, 0, Path(get_settings().artifact_dir) / "latency", self.db_url)
        if self.actor is None:
            return self.family.measure(params, self.device, context)
        import ray

        return ray.get(self.actor.measure.remote(self.family_name, json.dumps(self.options), params, context))
