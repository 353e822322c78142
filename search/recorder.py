"""Everything the driver writes to the store, in few and short transactions.

The driver is the only writer of a search's rows; keeping the writes here keeps the driver's
loop readable and makes each transaction's contents explicit. Every write goes through
``retry_transient``, so a store that drops out for a while delays the search instead of ending it;
each transaction is therefore written to be safe to run twice (a commit whose acknowledgement was
lost is re-run on retry).
"""

from __future__ import annotations

import hashlib
import socket
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from db.models import Artifact, HypervolumePoint, Search, Trial
from db.session import retry_transient, session_scope
from latency_models.cache import store_row
from search.spec import SearchSpec

FINISHED_STATES = ("complete", "failed", "invalid")
T = TypeVar("T")


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass
class TrialOutcome:
    """The final word on one trial, as the driver decided it."""

    number: int
    state: str  # complete | failed | invalid
    attempts: int
    values: dict[str, float] | None = None
    metrics: dict[str, float] | None = None
    feasible: bool = True
    error: str | None = None
    node: str | None = None
    device_node: str | None = None
    arch_hash: str | None = None
    duration_s: float | None = None
    sampler_attrs: dict[str, Any] | None = None
    measurements: list[dict[str, Any]] | None = None
    artifacts: list[dict[str, Any]] | None = None


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class SearchRecorder:
    """Writes for one search (``search_id``) in the store at ``db_url``."""

    def __init__(self, db_url: str, search_id: int) -> None:
        self.db_url = db_url
        self.search_id = search_id

    @classmethod
    def create_search(cls, db_url: str, spec: SearchSpec) -> SearchRecorder:
        with session_scope(db_url) as session:
            search = Search(
                name=spec.name,
                family=spec.family,
                spec=spec.model_dump(mode="json"),
                objectives=[o.model_dump(mode="json") for o in spec.objectives or []],
                status="created",
                optuna_study_name=f"pending-{_now().timestamp()}",
                n_trials_target=spec.budget.trials,
                host=socket.gethostname(),
            )
            session.add(search)
            session.flush()
            search.optuna_study_name = f"hilnas-search-{search.id}"
            return cls(db_url, search.id)

    @property
    def study_name(self) -> str:
        return f"hilnas-search-{self.search_id}"

    def _write(self, work: Callable[[Session], T]) -> T:
        """One transaction, re-run while the store is briefly unreachable."""

        def transaction() -> T:
            with session_scope(self.db_url) as session:
                return work(session)

        return retry_transient(transaction, self.db_url)

    def set_status(self, status: str, error: str | None = None) -> None:
        values: dict[str, Any] = {"status": status, "error": error}
        if status == "running":
            values["started_at"] = _now()
        if status in ("finished", "failed"):
            values["finished_at"] = _now()
        self._write(lambda session: session.execute(update(Search).where(Search.id == self.search_id).values(**values)))

    def set_reference_point(self, reference: list[float]) -> None:
        self._write(
            lambda session: session.execute(
                update(Search).where(Search.id == self.search_id).values(reference_point=reference)
            )
        )

    def add_running(self, trials: list[tuple[int, dict[str, Any], str | None]]) -> None:
        """Rows for freshly asked trials: (number, params, arch_hash); numbers that already have a row are kept."""

        def add(session: Session) -> None:
            existing = set(
                session.scalars(
                    select(Trial.number).where(
                        Trial.search_id == self.search_id, Trial.number.in_([n for n, _, _ in trials])
                    )
                )
            )
            rows = [
                {"search_id": self.search_id, "number": n, "params": p, "arch_hash": h, "state": "running"}
                for n, p, h in trials
                if n not in existing
            ]
            if rows:
                session.execute(insert(Trial), rows)  # one multi-row INSERT, no ORM objects to track

        self._write(add)

    def add_artifact(self, number: int, data: dict[str, Any]) -> None:
        """A file produced for a finished trial after the search (e.g. an exported program), with its hash."""

        def add(session: Session) -> None:
            trial_id = session.scalar(select(Trial.id).where(Trial.search_id == self.search_id, Trial.number == number))
            session.add(self._artifact_row(trial_id, data))

        self._write(add)

    def note_failed_attempt(self, number: int, attempts: int, error: str) -> None:
        self._write(
            lambda session: session.execute(
                update(Trial)
                .where(Trial.search_id == self.search_id, Trial.number == number)
                .values(attempts=attempts, error=error)
            )
        )

    def finish(self, outcomes: list[TrialOutcome]) -> None:
        """Final state of several trials, with their measurements and artifacts, in one transaction.

        A trial that already has its final state is left alone, so a re-run transaction adds nothing twice.
        """
        if outcomes:
            self._write(lambda session: self._finish(session, outcomes))

    def _finish(self, session: Session, outcomes: list[TrialOutcome]) -> None:
        rows = {
            t.number: t
            for t in session.scalars(
                select(Trial).where(Trial.search_id == self.search_id, Trial.number.in_([o.number for o in outcomes]))
            )
        }
        for outcome in outcomes:
            row = rows[outcome.number]
            if row.state in FINISHED_STATES:
                continue
            row.state = outcome.state
            row.attempts = outcome.attempts
            row.values = outcome.values
            row.metrics = outcome.metrics
            row.feasible = outcome.feasible
            row.error = outcome.error
            row.node = outcome.node
            row.device_node = outcome.device_node
            row.duration_s = outcome.duration_s
            row.sampler_attrs = outcome.sampler_attrs
            row.finished_at = _now()
            if outcome.arch_hash:
                row.arch_hash = outcome.arch_hash
            for measurement in outcome.measurements or []:
                self._add_measurement(session, row.id, measurement)
            for artifact in outcome.artifacts or []:
                session.add(self._artifact_row(row.id, artifact))

    def _add_measurement(self, session, trial_id: int, data: dict[str, Any]) -> None:  # noqa: ANN001
        store_row(session, data, search_id=self.search_id, trial_id=trial_id)

    def _artifact_row(self, trial_id: int, data: dict[str, Any]) -> Artifact:
        path = Path(data["path"])
        sha256 = data.get("sha256") or file_sha256(path)
        size = data.get("size_bytes") or path.stat().st_size
        return Artifact(
            search_id=self.search_id,
            trial_id=trial_id,
            kind=data["kind"],
            path=str(path),
            sha256=sha256,
            size_bytes=size,
            meta=data.get("meta"),
        )

    def update_front(self, pareto_numbers: set[int], hypervolume: float, n_finished: int) -> None:
        """Flag the front's trials and record the hypervolume after ``n_finished`` trials (once per count)."""
        self._write(lambda session: self._update_front(session, pareto_numbers, hypervolume, n_finished))

    def _update_front(self, session: Session, pareto_numbers: set[int], hypervolume: float, n_finished: int) -> None:
        session.execute(
            update(Trial)
            .where(Trial.search_id == self.search_id, Trial.is_pareto.is_(True), Trial.number.not_in(pareto_numbers))
            .values(is_pareto=False)
        )
        if pareto_numbers:
            session.execute(
                update(Trial)
                .where(Trial.search_id == self.search_id, Trial.number.in_(pareto_numbers))
                .values(is_pareto=True)
            )
        session.execute(update(Search).where(Search.id == self.search_id).values(hypervolume=hypervolume))
        recorded = session.scalar(
            select(HypervolumePoint.id).where(
                HypervolumePoint.search_id == self.search_id, HypervolumePoint.n_finished == n_finished
            )
        )
        if recorded is None:
            session.add(HypervolumePoint(search_id=self.search_id, n_finished=n_finished, hypervolume=hypervolume))

    def load_trials(self) -> list[Trial]:
        def load() -> list[Trial]:
            with session_scope(self.db_url) as session:
                return list(
                    session.scalars(select(Trial).where(Trial.search_id == self.search_id).order_by(Trial.number))
                )

        return retry_transient(load, self.db_url)
