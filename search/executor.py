"""Ray plumbing: connecting, the quality-evaluation task and the per-device measuring actor.

Quality work runs as plain Ray tasks wherever CPUs are free. Latency work goes to one actor per
device, placed by the custom resource ``hw:<device>`` and running one call at a time, so a device
never measures two candidates at once. Ray re-creates the actor when its process crashes or its
node dies (``max_restarts=-1``), on whichever node offers the resource next; calls made meanwhile
wait for it.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import traceback
from functools import lru_cache
from typing import Any

import ray

from hilnas.errors import UserError
from search.family import Evaluation, Family, TrialContext
from search.registry import create_family

DEVICE_NAMESPACE = "hilnas"


def device_resource(device: str) -> str:
    return f"hw:{device}"


def connect_ray(address: str | None, local_devices: list[str], num_cpus: int | None = None) -> None:
    """Join the cluster at ``address``, or start a local instance offering ``local_devices``."""
    if ray.is_initialized():
        return
    common: dict[str, Any] = {
        "namespace": DEVICE_NAMESPACE,
        "logging_level": logging.WARNING,
        "log_to_driver": True,
        "configure_logging": True,
    }
    try:
        if address:
            ray.init(address=address, **common)
        else:
            resources = {device_resource(d): 1.0 for d in local_devices}
            ray.init(num_cpus=num_cpus, resources=resources, include_dashboard=False, **common)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = address or "a local instance"
        raise UserError(f"Cannot start or reach Ray at {where}: {str(exc).splitlines()[0]}.") from exc


def device_available(device: str) -> bool:
    """Whether a live node of the cluster offers the device's resource right now."""
    return device_resource(device) in ray.cluster_resources()


def require_device(device: str) -> None:
    """Fail fast when no node of the cluster carries the device's resource."""
    resource = device_resource(device)
    if not device_available(device):
        raise UserError(
            f"No Ray node offers the device resource {resource!r}; start a node with "
            f"--resources '{{\"{resource}\": 1}}'."
        )


@lru_cache(maxsize=16)
def _family(name: str, options_json: str) -> Family:
    return create_family(name, json.loads(options_json))


def _node_label() -> str:
    node_id = ray.get_runtime_context().get_node_id() if ray.is_initialized() else "local"
    return f"{socket.gethostname()}:{node_id[:12]}:{os.getpid()}"


def describe_exception(exc: BaseException, device: str | None = None) -> str:
    """``Type: message`` of the user's exception inside a Ray error, then its traceback.

    A device actor that died mid-measurement gets a sentence saying so first: Ray's own message
    does not say which device was lost.
    """
    cause = exc.cause if isinstance(exc, ray.exceptions.RayTaskError) and exc.cause is not None else exc
    head = f"{type(cause).__name__}: {str(cause).strip().splitlines()[0] if str(cause).strip() else ''}"
    if device is not None and isinstance(exc, ray.exceptions.RayActorError):
        head = (
            f"{type(exc).__name__}: the actor measuring on {device_resource(device)!r} stopped mid-measurement "
            f"(it crashed or its node left the cluster); Ray re-creates it on a node offering the device"
        )
    if isinstance(exc, ray.exceptions.RayTaskError):
        return f"{head}\n{str(exc)[-4000:]}"
    return f"{head}\n{''.join(traceback.format_exception(cause))[-4000:]}"


@ray.remote(max_retries=0)
def evaluate_quality(family_name: str, options_json: str, params: dict[str, Any], context: TrialContext) -> Evaluation:
    """One candidate's quality; retries are the driver's business, so Ray's own are off."""
    evaluation = _family(family_name, options_json).evaluate(params, context)
    evaluation.info.setdefault("node", _node_label())
    return evaluation


@ray.remote(max_restarts=-1, max_task_retries=0)
class DeviceActor:
    """The single door to one device: measurements queue here and run one at a time."""

    def __init__(self, device: str) -> None:
        self.device = device

    def measure(self, family_name: str, options_json: str, params: dict[str, Any], context: TrialContext) -> Evaluation:
        evaluation = _family(family_name, options_json).measure(params, self.device, context)
        evaluation.info.setdefault("device_node", _node_label())
        return evaluation

    def node(self) -> str:
        return _node_label()


#: device -> the handle this process holds for the current Ray session (see ``device_actor``).
_held_actors: dict[str, ray.actor.ActorHandle] = {}
_held_session: tuple[str, str] | None = None  # (GCS address, job id) the handles belong to


def device_actor(device: str) -> ray.actor.ActorHandle:
    """The device's actor, created on first use on the node that carries ``hw:<device>``.

    This process keeps one handle per device for as long as its Ray session lasts: Ray kills an actor once
    every handle its creator held is gone, so a pipeline whose stages each took and dropped a handle saw the
    actor die under the next stage's measurements (ActorDiedError, seen in CI). A new session (after
    ``ray.shutdown``) drops the old handles: job ids restart at the same value in every fresh cluster, so the
    session is told apart by its GCS address too.
    """
    global _held_session
    context = ray.get_runtime_context()
    session = (context.gcs_address, context.get_job_id())
    if session != _held_session:
        _held_actors.clear()
        _held_session = session
    if device not in _held_actors:
        _held_actors[device] = DeviceActor.options(
            name=f"device:{device}",
            namespace=DEVICE_NAMESPACE,
            get_if_exists=True,
            num_cpus=0,
            resources={device_resource(device): 1.0},
            max_concurrency=1,
        ).remote(device)
    return _held_actors[device]
