"""The search driver: one process owns the Optuna study and is the only writer of the store.

It asks the sampler for trials in batches, evaluates them as Ray work (quality as tasks, latency
on the device's actor), retries trials that raise, crash or time out, and tells the results back.
A search survives ``kill -9``: every asked trial has a row before it is dispatched, a result is
stored before the sampler hears of it, and ``resume`` rebuilds the sampler's study from the store
and re-dispatches exactly the trials left unfinished, under their original numbers.

On a cluster, the same retry covers a killed worker or node. When the device's actor dies under a
measurement (a crash, or its node lost), Ray re-creates it; until it answers again the driver sends
it nothing, and trials wait for it (with a trial timeout, they fail saying that no node offers the
device). No number is ever stored that the device did not measure. A store that drops out is waited for (see
``db.session.retry_transient``); one that stays away stops the search, which can then be resumed.
"""

from __future__ import annotations

import json
import math
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import ray
from optuna.trial import TrialState

from db.session import StoreUnavailable
from hilnas.errors import Interrupted
from hilnas.settings import get_settings
from search import executor
from search.family import Evaluation, Family, InvalidCandidate, TrialContext
from search.pareto import hypervolume, pareto_mask, to_minimization
from search.queries import get_search
from search.recorder import FINISHED_STATES, SearchRecorder, TrialOutcome
from search.spec import SearchSpec
from search.study import StudyMirror, finished_trial, working_study

optuna.logging.set_verbosity(optuna.logging.WARNING)


@dataclass
class Progress:
    finished: int
    target: int
    failed: int
    hypervolume: float | None


@dataclass
class _InFlight:
    number: int
    trial: optuna.Trial
    params: dict[str, Any]
    attempt: int
    started: float = 0.0
    refs: list[ray.ObjectRef] = field(default_factory=list)
    #: With ``budget.measure_alone``: "training" until its quality is ready, "waiting" for the device, "measuring".
    device_stage: str | None = None
    context: TrialContext | None = None


class _CtrlC:
    """Ctrl-C as a flag the loop reads between steps, so that it stops the search wherever the signal lands.

    A KeyboardInterrupt raised inside Ray's or a library's code can be deferred or lost there (a CI run
    finished a search it had been told to stop); the loop turns the flag into KeyboardInterrupt itself.
    """

    def __init__(self) -> None:
        self.received = threading.Event()
        self.previous = None
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGINT, lambda _signum, _frame: self.received.set())

    def check(self) -> None:
        if self.received.is_set():
            raise KeyboardInterrupt

    def restore(self) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)


@dataclass
class SearchResult:
    search_id: int
    finished: int
    failed: int
    hypervolume: float | None
    status: str


class SearchDriver:
    """Runs one search to its trial budget; create with ``start`` or ``resume``."""

    def __init__(self, spec: SearchSpec, recorder: SearchRecorder, db_url: str) -> None:
        self.spec = spec
        self.recorder = recorder
        self.db_url = db_url
        self.study = working_study(spec)
        self.objective_names = [o.name for o in spec.objectives or []]
        self.directions = [o.direction for o in spec.objectives or []]
        self.mirror = StudyMirror(recorder.study_name, db_url, self.directions)
        self.family: Family = spec.build_family()
        self.options_json = json.dumps(spec.options, sort_keys=True)
        self.device = spec.device or get_settings().device
        self.artifact_dir = Path(get_settings().artifact_dir) / f"search-{recorder.search_id}"
        self.reference: list[float] | None = None
        self._in_flight: dict[int, _InFlight] = {}
        self._pending: list[_InFlight] = []  # asked or resumed, waiting for a free slot
        self._next_number = 0
        self._finished = 0
        self._failed = 0
        # number -> minimisation values of the feasible trials on the front: a trial once dominated never returns to it
        self._front_values: dict[int, np.ndarray] = {}
        self._hypervolume: float | None = None
        self._front_numbers: set[int] = set()  # as last stored
        self._actor: ray.actor.ActorHandle | None = None
        self._device_probe: ray.ObjectRef | None = None  # set while the device actor is being re-created
        self._device_lost_at: float | None = None

    # ----------------------------------------------------------------- construction

    @classmethod
    def start(cls, spec: SearchSpec, db_url: str | None = None) -> SearchDriver:
        db_url = db_url or get_settings().db_url
        return cls(spec, SearchRecorder.create_search(db_url, spec), db_url)

    @classmethod
    def resume(cls, search_id: int, db_url: str | None = None) -> SearchDriver:
        db_url = db_url or get_settings().db_url
        search = get_search(search_id, db_url)
        driver = cls(SearchSpec.model_validate(search.spec), SearchRecorder(db_url, search_id), db_url)
        driver.reference = search.reference_point
        driver._restore()
        return driver

    @property
    def search_id(self) -> int:
        return self.recorder.search_id

    # ----------------------------------------------------------------- main loop

    def run(
        self,
        address: str | None = None,
        on_progress: Callable[[Progress], None] | None = None,
    ) -> SearchResult:
        """Evaluate trials until the budget is met; Ctrl-C raises ``Interrupted``.

        Optuna's copy of the study (``StudyMirror``) may lag the store by a moment while trials run;
        it holds every finished trial once this returns or is interrupted (after a crash or an error,
        ``resume`` completes it).
        """
        executor.connect_ray(address or get_settings().ray_address, [self.device])
        actor = None
        if self.family.needs_device:
            executor.require_device(self.device)
            actor = executor.device_actor(self.device)
        self._actor = actor
        self.recorder.set_status("running")
        budget = self.spec.budget
        ctrl_c = _CtrlC()
        try:
            self._report(on_progress)
            while self._finished < budget.trials:
                ctrl_c.check()
                self._top_up()
                self._dispatch(actor)
                if not self._in_flight and self._device_probe is None:
                    continue
                self._collect(actor)
                self._report(on_progress)
        except StoreUnavailable as exc:
            self._cancel_all()  # the status cannot be written either: it stays "running", and resume works
            raise StoreUnavailable(
                f"{exc.message.rstrip('.')}; search {self.search_id} stopped after {self._finished} finished "
                f"trials, continue it with `hilnas search resume {self.search_id}` once the database is back."
            ) from exc
        except KeyboardInterrupt as exc:
            # No cancel: cancelling right before the process exits has crashed Ray 2.60's core worker
            # (a failed internal check when the cancelled task's reply still arrives), exit code 1. Ray
            # stops the tasks of a driver that has gone; resume re-runs the trials left unfinished.
            self._in_flight.clear()
            self.mirror.flush()
            self.recorder.set_status("interrupted")
            raise Interrupted(
                f"Search {self.search_id} was interrupted after {self._finished} finished trials; "
                f"continue it with `hilnas search resume {self.search_id}`."
            ) from exc
        except BaseException as exc:
            self._cancel_all()
            self.recorder.set_status("failed", error=f"{type(exc).__name__}: {exc}")
            raise
        finally:
            ctrl_c.restore()
        self.mirror.flush()
        self.recorder.set_status("finished")
        if ctrl_c.received.is_set():  # it came with the last trial: the search is done, but the caller must stop
            raise Interrupted(f"Search {self.search_id} finished its {self._finished} trials as it was interrupted.")
        return SearchResult(self.search_id, self._finished, self._failed, self._hypervolume, "finished")

    def _report(self, on_progress: Callable[[Progress], None] | None) -> None:
        if on_progress is not None:
            on_progress(Progress(self._finished, self.spec.budget.trials, self._failed, self._hypervolume))

    # ----------------------------------------------------------------- resume

    def _restore(self) -> None:
        """Rebuild the sampler's study from the store and queue the trials that never finished."""
        rows = self.recorder.load_trials()
        space = self.spec.space
        finished = []
        for row in rows:
            self._next_number = max(self._next_number, row.number + 1)
            if row.state not in FINISHED_STATES:
                continue
            self._finished += 1
            self._failed += row.state != "complete"
            complete = row.state == "complete" and row.values is not None
            finished.append(
                (
                    row.number,
                    finished_trial(
                        row.number,
                        space.flatten(row.params),
                        space.distributions(row.params),
                        TrialState.COMPLETE if complete else TrialState.FAIL,
                        [row.values[n] for n in self.objective_names] if complete else None,
                        row.sampler_attrs,
                    ),
                )
            )
            if complete and row.feasible:
                self._front_values[row.number] = self._min_values(row.values)
        self.study.add_trials([trial for _, trial in finished])
        mirrored = self.mirror.mirrored_numbers()
        self.mirror.add([trial for number, trial in finished if number not in mirrored])
        self.mirror.flush()
        for row in rows:
            if row.state not in FINISHED_STATES:
                self.study.enqueue_trial(space.flatten(row.params))
                trial = self.study.ask()
                space.sample(trial)  # replays the enqueued values, registering their distributions
                self._pending.append(_InFlight(row.number, trial, row.params, row.attempts + 1))
        if self._front_values:
            self._refresh_front()

    # ----------------------------------------------------------------- asking

    def _top_up(self) -> None:
        """Ask the sampler for a batch when the queue runs dry and budget remains."""
        budget = self.spec.budget
        outstanding = self._finished + len(self._in_flight) + len(self._pending)
        room = budget.trials - outstanding
        if self._pending or room <= 0 or len(self._in_flight) >= budget.max_concurrency:
            return
        asked: list[_InFlight] = []
        invalid: list[tuple[_InFlight, TrialOutcome]] = []
        for _ in range(min(budget.batch_size, room)):
            trial = self.study.ask()
            entry = _InFlight(self._next_number, trial, self.spec.space.sample(trial), 1)
            self._next_number += 1
            try:
                self.family.check_candidate(entry.params)
            except InvalidCandidate as exc:
                invalid.append((entry, TrialOutcome(entry.number, "invalid", 0, error=f"invalid candidate: {exc}")))
                continue
            asked.append(entry)
        entries = asked + [entry for entry, _ in invalid]
        self.recorder.add_running([(e.number, e.params, self.family.arch_hash(e.params)) for e in entries])
        self._conclude(invalid)
        self._pending.extend(asked)

    # ----------------------------------------------------------------- dispatching

    def _dispatch(self, actor: ray.actor.ActorHandle | None) -> None:
        alone = actor is not None and self.spec.budget.measure_alone
        if alone and self._device_turn(actor):
            return
        evaluate_quality = executor.evaluate_quality.options(num_cpus=self.spec.budget.cpus_per_trial)
        while self._device_probe is None and self._pending and len(self._in_flight) < self.spec.budget.max_concurrency:
            entry = self._pending.pop(0)
            context = TrialContext(
                search_id=self.search_id,
                trial_number=entry.number,
                attempt=entry.attempt,
                seed=(self.spec.sampler.seed or 0) * 100_003 + entry.number,
                artifact_dir=self.artifact_dir,
                db_url=self.db_url,
            )
            entry.refs = [evaluate_quality.remote(self.family.name, self.options_json, entry.params, context)]
            entry.context = context
            if alone:
                entry.device_stage = "training"
            elif actor is not None:
                entry.refs.append(actor.measure.remote(self.family.name, self.options_json, entry.params, context))
            entry.started = time.monotonic()
            self._in_flight[entry.number] = entry

    def _device_turn(self, actor: ray.actor.ActorHandle) -> bool:
        """With ``measure_alone``: once the batch in flight has trained, measure its trials one at a time.
        True while the batch trains or the device works: no new training starts then."""
        unmeasured = [e for e in self._in_flight.values() if e.device_stage in ("training", "waiting")]
        if not unmeasured:
            return False
        busy = any(e.device_stage in ("training", "measuring") for e in self._in_flight.values())
        if busy or self._device_probe is not None:  # training, measuring, or the device is being re-created
            return True
        entry = unmeasured[0]
        entry.refs.append(actor.measure.remote(self.family.name, self.options_json, entry.params, entry.context))
        entry.device_stage = "measuring"
        return True

    def _cancel_all(self) -> None:
        """Cancel in-flight work, killing the workers (not on Ctrl-C, see ``run``)."""
        for entry in self._in_flight.values():
            for ref in entry.refs:
                try:
                    ray.cancel(ref, force=True)
                except (TypeError, ValueError):  # actor calls cannot be force-cancelled
                    ray.cancel(ref)
        self._in_flight.clear()

    # ----------------------------------------------------------------- collecting

    def _collect(self, actor: ray.actor.ActorHandle | None) -> None:
        """Wait for at least one trial to finish (or time out), then conclude every finished one."""
        refs = [ref for entry in self._in_flight.values() for ref in entry.refs]
        refs += [self._device_probe] if self._device_probe is not None else []
        # The ready quality of a candidate waiting for the device (measure_alone) would end every wait at once.
        trained = {e.refs[0] for e in self._in_flight.values() if e.device_stage in ("waiting", "measuring")}
        awaited = [ref for ref in refs if ref not in trained]
        if awaited:
            ray.wait(awaited, num_returns=1, timeout=self._wait_timeout())
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
        ready_set = set(ready)
        concluded: list[tuple[_InFlight, TrialOutcome]] = []
        for entry in list(self._in_flight.values()):
            if entry.device_stage == "training" and entry.refs[0] in ready_set:
                entry.device_stage = "waiting"
            if all(ref in ready_set for ref in entry.refs) and entry.device_stage not in ("training", "waiting"):
                del self._in_flight[entry.number]
                outcome = self._settle(entry)
            elif self._timed_out(entry):
                del self._in_flight[entry.number]
                waited_for_device = actor is not None and entry.refs[-1] not in ready_set
                self._cancel_entry(entry, actor)
                outcome = self._retry_or_fail(entry, self._timeout_reason(waited_for_device))
            else:
                continue
            if outcome is not None:
                concluded.append((entry, outcome))
        self._conclude(concluded)
        if self._device_probe is not None:
            self._check_device()

    def _conclude(self, concluded: list[tuple[_InFlight, TrialOutcome]]) -> None:
        """Store final outcomes first, then tell the sampler and queue them for Optuna's tables."""
        if not concluded:
            return
        for entry, outcome in concluded:
            if outcome.state == "complete":
                for i, constraint in enumerate(self.spec.constraints):
                    violation = constraint.violation((outcome.metrics or {}).get(constraint.metric, math.inf))
                    entry.trial.set_constraint(f"{i}:{constraint.metric}", violation)
        frozen = self.study.get_trials(deepcopy=False)
        for entry, outcome in concluded:
            outcome.sampler_attrs = dict(frozen[entry.trial.number].system_attrs)
        self.recorder.finish([outcome for _, outcome in concluded])
        mirrored = []
        for entry, outcome in concluded:
            self._finished += 1
            space = self.spec.space
            if outcome.state == "complete":
                values = [outcome.values[name] for name in self.objective_names]
                self.study.tell(entry.trial, values)
                if outcome.feasible:
                    self._front_values[entry.number] = self._min_values(outcome.values)
            else:
                values = None
                self._failed += 1
                self.study.tell(entry.trial, state=TrialState.FAIL)
            state = TrialState.COMPLETE if values is not None else TrialState.FAIL
            mirrored.append(
                finished_trial(
                    entry.number,
                    space.flatten(entry.params),
                    space.distributions(entry.params),
                    state,
                    values,
                    outcome.sampler_attrs,
                )
            )
        self.mirror.add(mirrored)
        if any(outcome.state == "complete" for _, outcome in concluded):
            self._refresh_front()

    def _wait_timeout(self) -> float:
        timeout = self.spec.budget.trial_timeout_s
        if timeout is None or not self._in_flight:
            return 1.0
        now = time.monotonic()
        nearest = min(entry.started + timeout - now for entry in self._in_flight.values())
        return max(0.01, min(1.0, nearest))

    def _timed_out(self, entry: _InFlight) -> bool:
        timeout = self.spec.budget.trial_timeout_s
        return timeout is not None and time.monotonic() - entry.started > timeout

    def _timeout_reason(self, waited_for_device: bool) -> str:
        reason = f"TimeoutError: trial exceeded {self.spec.budget.trial_timeout_s:g} s"
        if waited_for_device and not executor.device_available(self.device):
            resource = executor.device_resource(self.device)
            reason += f" waiting for its device: no live Ray node offers {resource!r} (was its node lost?)"
        return reason

    def _cancel_entry(self, entry: _InFlight, actor: ray.actor.ActorHandle | None) -> None:
        ray.cancel(entry.refs[0], force=True)
        if actor is not None and len(entry.refs) > 1:
            ray.kill(actor, no_restart=False)  # a hung measurement: restart the actor

    def _settle(self, entry: _InFlight) -> TrialOutcome | None:
        """Turn a finished attempt into an outcome, or re-queue it (returns None) for a retry."""
        try:
            evaluations: list[Evaluation] = ray.get(entry.refs)
        except Exception as exc:  # a raising family, a dead worker, node or actor: all retryable
            if isinstance(exc, ray.exceptions.RayActorError):
                self._device_lost()
            return self._retry_or_fail(entry, executor.describe_exception(exc, self.device))
        metrics: dict[str, float] = {}
        measurements: list[dict[str, Any]] = []
        artifacts: list[dict[str, Any]] = []
        for evaluation in evaluations:
            metrics.update(evaluation.metrics)
            measurements.extend(evaluation.measurements)
            artifacts.extend(evaluation.artifacts)
        missing = [name for name in self.objective_names if name not in metrics]
        bad = [name for name in self.objective_names if name in metrics and not math.isfinite(metrics[name])]
        node = evaluations[0].info.get("node")
        device_node = evaluations[-1].info.get("device_node") if len(evaluations) > 1 else None
        duration = time.monotonic() - entry.started
        if missing or bad:
            problem = f"missing {missing}" if missing else f"non-finite {bad}"
            return TrialOutcome(
                entry.number,
                "failed",
                entry.attempt,
                metrics=metrics,
                node=node,
                device_node=device_node,
                duration_s=duration,
                error=f"ValueError: the evaluation reported {problem} objective values",
            )
        feasible = all(c.violation(metrics[c.metric]) <= 0 for c in self.spec.constraints if c.metric in metrics)
        return TrialOutcome(
            entry.number,
            "complete",
            entry.attempt,
            values={name: float(metrics[name]) for name in self.objective_names},
            metrics=metrics,
            feasible=feasible,
            node=node,
            device_node=device_node,
            arch_hash=self.family.arch_hash(entry.params),
            duration_s=duration,
            measurements=measurements,
            artifacts=artifacts,
        )

    def _retry_or_fail(self, entry: _InFlight, error: str) -> TrialOutcome | None:
        if entry.attempt <= self.spec.budget.max_retries:
            self.recorder.note_failed_attempt(entry.number, entry.attempt, error)
            self._pending.append(_InFlight(entry.number, entry.trial, entry.params, entry.attempt + 1))
            return None
        return TrialOutcome(entry.number, "failed", entry.attempt, error=error)

    # ----------------------------------------------------------------- a device that went away

    def _device_lost(self) -> None:
        """The device actor died under a measurement: probe it, and send it nothing until it answers."""
        if self._device_probe is None and self._actor is not None:
            self._device_probe = self._actor.node.remote()
            self._device_lost_at = self._device_lost_at or time.monotonic()

    def _check_device(self) -> None:
        """Resume dispatching once the re-created actor answers; fail trials that waited past their timeout."""
        probe = self._device_probe
        ready, _ = ray.wait([probe], timeout=0)
        if ready:
            try:
                ray.get(probe)
                self._device_probe = self._device_lost_at = None
                return
            except ray.exceptions.RayActorError:  # still being re-created, or no node offers the device
                time.sleep(0.5)
                self._device_probe = self._actor.node.remote()
        timeout = self.spec.budget.trial_timeout_s
        if timeout is None or time.monotonic() - self._device_lost_at < timeout or not self._pending:
            return
        waiting, self._pending = self._pending, []
        self._device_lost_at = time.monotonic()  # each retry gets a full timeout to wait
        reason = f"TimeoutError: waited {timeout:g} s for the device's actor to come back"
        if not executor.device_available(self.device):
            reason += f": no live Ray node offers {executor.device_resource(self.device)!r} (was its node lost?)"
        failed = [(entry, outcome) for entry in waiting if (outcome := self._retry_or_fail(entry, reason))]
        self._conclude(failed)

    # ----------------------------------------------------------------- Pareto front

    def _min_values(self, values: dict[str, float]) -> np.ndarray:
        return to_minimization(np.array([[values[n] for n in self.objective_names]]), self.directions)[0]

    def _refresh_front(self) -> None:
        if not self._front_values:
            return
        numbers = list(self._front_values)
        points = np.stack([self._front_values[n] for n in numbers])
        if self.reference is None:
            self.reference = self._reference_point(points)
            self.recorder.set_reference_point(self.reference)
        mask = pareto_mask(points)
        self._front_values = {n: p for n, p, on_front in zip(numbers, points, mask, strict=True) if on_front}
        front_numbers = set(self._front_values)
        volume = hypervolume(points[mask], self._min_reference())
        if front_numbers == self._front_numbers and volume == self._hypervolume:
            return  # nothing new to store: most batches after the start leave the front as it was
        self._front_numbers, self._hypervolume = front_numbers, volume
        self.recorder.update_front(front_numbers, volume, self._finished)

    def _reference_point(self, points: np.ndarray) -> list[float]:
        """The spec's reference values (in the objectives' own direction), else 10% past the worst seen."""
        worst = points.max(axis=0)
        spread = np.maximum(np.abs(worst), 1e-9) * 0.1
        reference = []
        for i, objective in enumerate(self.spec.objectives or []):
            if objective.reference is not None:
                reference.append(float(objective.reference))
            else:
                fallback = worst[i] + spread[i]
                reference.append(float(-fallback if objective.direction == "maximize" else fallback))
        return reference

    def _min_reference(self) -> list[float]:
        assert self.reference is not None
        return list(to_minimization(np.array([self.reference]), self.directions)[0])
