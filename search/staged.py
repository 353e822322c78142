"""Staged runs: an ordered list of named stages whose outputs are stored, so a resumed run skips finished ones.

MobileLLM-Flash's method is staged (calibrate the latency model, search, verify on the device,
export), and each stage is minutes of work. A stage's output (a JSON dict: ids of what it wrote,
paths, figures) is committed in the same transaction that marks it done; a later stage reads its
inputs from there. A crash or Ctrl-C mid-stage leaves that stage "running" or "failed", and
``resume`` re-runs it from its start (a stage that wraps a search resumes that search instead of
starting a new one, see ``StageContext.output_so_far``).
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from db.models import Base, PipelineRun, PipelineStage
from db.session import retry_transient, session_scope
from hilnas.errors import Interrupted, UserError

StageFn = Callable[["StageContext"], dict[str, Any]]


@dataclass
class StageContext:
    """What a stage function gets: the run, the finished stages' outputs and a way to save partial progress."""

    run: StagedRun
    name: str
    outputs: dict[str, dict[str, Any]]
    output_so_far: dict[str, Any]

    def checkpoint(self, partial: dict[str, Any]) -> None:
        """Store partial output now (e.g. the id of a search the stage started) so a resume can reuse it."""
        self.output_so_far.update(partial)
        self.run.save_partial(self.name, self.output_so_far)


class StagedRun:
    """A run row and its stage rows; ``execute`` runs the stages that are not done yet, in order."""

    def __init__(self, db_url: str, run_id: int) -> None:
        self.db_url, self.run_id = db_url, run_id

    @classmethod
    def create(cls, db_url: str, kind: str, name: str, spec: dict[str, Any], stages: list[str]) -> StagedRun:
        with session_scope(db_url) as session:
            run = PipelineRun(kind=kind, name=name, spec=spec, status="created", host=socket.gethostname())
            run.stages = [PipelineStage(name=stage, position=i, status="pending") for i, stage in enumerate(stages)]
            session.add(run)
            session.flush()
            return cls(db_url, run.id)

    @classmethod
    def load(cls, db_url: str, run_id: int, kind: str) -> StagedRun:
        with session_scope(db_url) as session:
            run = session.get(PipelineRun, run_id)
            if run is None or run.kind != kind:
                raise UserError(f"There is no {kind} run with id {run_id} in the store.")
        return cls(db_url, run_id)

    def spec(self) -> dict[str, Any]:
        with session_scope(self.db_url) as session:
            return dict(session.get(PipelineRun, self.run_id).spec)

    def stages(self) -> list[dict[str, Any]]:
        with session_scope(self.db_url) as session:
            rows = session.scalars(
                select(PipelineStage).where(PipelineStage.run_id == self.run_id).order_by(PipelineStage.position)
            )
            return [
                {
                    "name": s.name,
                    "status": s.status,
                    "output": s.output or {},
                    "error": s.error,
                    "duration_s": s.duration_s,
                }
                for s in rows
            ]

    def status(self) -> str:
        with session_scope(self.db_url) as session:
            return session.get(PipelineRun, self.run_id).status

    def execute(self, functions: dict[str, StageFn], on_stage: Callable[[str, str], None] | None = None) -> dict:
        """Run every stage not yet done; returns all outputs. A failing stage stores its error (and the run's)
        and re-raises."""
        self.set_status("running")
        outputs = {s["name"]: s["output"] for s in self.stages() if s["status"] == "done"}
        for stage in self.stages():
            name = stage["name"]
            if stage["status"] == "done":
                if on_stage:
                    on_stage(name, "skipped (done)")
                continue
            if on_stage:
                on_stage(name, "started")
            try:
                outputs[name] = self.run_stage(name, functions[name], outputs, stage["output"])
            except BaseException as exc:
                self.set_status(_ended_by(exc), str(exc) or type(exc).__name__)
                raise
            if on_stage:
                on_stage(name, "done")
        self.set_status("finished")
        return outputs

    def run_stage(
        self, name: str, function: StageFn, outputs: dict[str, dict[str, Any]], partial: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Run one stage: mark it running, store its output when it returns, or its error when it raises (the
        run's status is the caller's). ``partial`` is what an earlier, unfinished attempt checkpointed."""
        self._mark(name, "running")
        started = time.perf_counter()
        context = StageContext(self, name, dict(outputs), dict(partial or {}))
        try:
            output = function(context)
        except BaseException as exc:
            self._mark(name, _ended_by(exc), error=str(exc) or type(exc).__name__)
            raise
        self._mark(name, "done", output=output, duration_s=time.perf_counter() - started)
        return output

    def append_stage(self, name: str, with_rows: Sequence[Base] = ()) -> None:
        """Add a pending stage after the last one (runs whose plan grows as it goes, such as the agent's), and
        ``with_rows`` in the same transaction (e.g. the decision that planned the stage)."""

        def write() -> None:
            with session_scope(self.db_url) as session:
                last = session.scalar(
                    select(PipelineStage.position)
                    .where(PipelineStage.run_id == self.run_id)
                    .order_by(PipelineStage.position.desc())
                    .limit(1)
                )
                position = 0 if last is None else last + 1
                session.add(PipelineStage(run_id=self.run_id, name=name, position=position, status="pending"))
                session.add_all(list(with_rows))

        retry_transient(write, self.db_url)

    def skip_stage(self, name: str, reason: str) -> None:
        """Mark a planned stage as not to be run (a growing plan whose budget ran out before it), with the reason."""
        self._mark(name, "skipped", error=reason)

    def save_partial(self, name: str, output: dict[str, Any]) -> None:
        def write() -> None:
            with session_scope(self.db_url) as session:
                self._stage_row(session, name).output = dict(output)

        retry_transient(write, self.db_url)

    def _stage_row(self, session, name: str) -> PipelineStage:  # noqa: ANN001 - a Session
        return session.scalars(
            select(PipelineStage).where(PipelineStage.run_id == self.run_id, PipelineStage.name == name)
        ).one()

    def _mark(
        self,
        name: str,
        status: str,
        output: dict[str, Any] | None = None,
        error: str | None = None,
        duration_s: float | None = None,
    ) -> None:
        def write() -> None:
            with session_scope(self.db_url) as session:
                row = self._stage_row(session, name)
                row.status, row.error = status, error
                now = datetime.now(UTC)
                if status == "running":
                    row.started_at = now
                else:
                    row.finished_at = now
                if output is not None:
                    row.output = output
                if duration_s is not None:
                    row.duration_s = duration_s

        retry_transient(write, self.db_url)

    def set_status(self, status: str, error: str | None = None) -> None:
        """Set the run's status (``execute`` sets it for fixed plans; a growing plan sets it itself)."""

        def write() -> None:
            with session_scope(self.db_url) as session:
                run = session.get(PipelineRun, self.run_id)
                run.status, run.error = status, error
                if status in ("finished", "failed", "interrupted"):
                    run.finished_at = datetime.now(UTC)

        retry_transient(write, self.db_url)


def _ended_by(exc: BaseException) -> str:
    """The status an exception leaves behind: Ctrl-C interrupts, anything else fails."""
    return "interrupted" if isinstance(exc, KeyboardInterrupt | Interrupted) else "failed"


def list_runs(db_url: str, kind: str | None = None) -> list[dict[str, Any]]:
    with session_scope(db_url) as session:
        query = select(PipelineRun).order_by(PipelineRun.id)
        if kind is not None:
            query = query.where(PipelineRun.kind == kind)
        return [
            {"id": r.id, "kind": r.kind, "name": r.name, "status": r.status, "created_at": r.created_at}
            for r in session.scalars(query)
        ]
