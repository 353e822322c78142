"""Judging hilnas's own runs: a DevAI-format requirement set whose checks are decided against the store.

Requirements that name a ``check`` are decided by the tool functions here, from SQL queries and file
tests, never by the LLM. A check reports only what the store holds: when something was never stored
(no predicted latencies, no exported ``.pte``), the requirement is unsatisfied and says so. Requirements
without a check are soft criteria; the LLM judges them on evidence read from the store (offline mode
cannot decide them and says so).
"""

from __future__ import annotations

import json
from collections import Counter
from importlib import resources
from pathlib import Path

from sqlalchemy import select

from agents.judge.agent import CheckResult, ToolCheck
from agents.judge.devai import DevAITask, load_task, parse_task
from agents.judge.offline import OFFLINE_NOTE
from agents.judge.verdict import Evidence
from db.models import Artifact, Base, Measurement, Search, Trial
from db.session import session_scope
from hilnas.errors import UserError
from search.recorder import FINISHED_STATES, file_sha256

# The latency-model issue's bar on the random held-out split, and the verification stage's.
PREDICTOR_WITHIN_10_BAR = 0.95
PREDICTOR_TAU_BAR = 0.9
PREDICTION_MAPE_BAR = 0.10
MIN_VERIFIED_FRONT = 3
# Looked up by name so that judging works whether or not this build stores predictors (db/models/latency.py).
PREDICTOR_TABLE = "hilnas_latency_predictors"


def search_requirements(path: Path | str | None = None) -> DevAITask:
    """The requirement set for a search: ``path`` if given, else the built-in ``search_run.json``."""
    if path is not None:
        return load_task(path)
    text = resources.files("agents.judge").joinpath("requirement_sets/search_run.json").read_text(encoding="utf-8")
    return parse_task(json.loads(text), source="search_run.json")


def _store(path: str, text: str, note: str = "") -> Evidence:
    return Evidence(f"store:{path}", 0, 0, text, note)


class SearchChecks:
    """The tool checks for one search, and the store as an evidence source for soft criteria."""

    def __init__(self, search_id: int, db_url: str | None = None) -> None:
        self.search_id = search_id
        self.db_url = db_url
        with session_scope(db_url) as session:
            search = session.get(Search, search_id)
            if search is None:
                raise UserError(f"There is no search with id {search_id} in the store.")
            self.search = search
            self.trials = list(session.scalars(select(Trial).where(Trial.search_id == search_id)))
            self.measurements = list(session.scalars(select(Measurement).where(Measurement.search_id == search_id)))
            self.artifacts = list(session.scalars(select(Artifact).where(Artifact.search_id == search_id)))

    def checks(self) -> dict[str, ToolCheck]:
        return {
            "search_finished": self.search_finished,
            "no_lost_trials": self.no_lost_trials,
            "predictor_accuracy": self.predictor_accuracy,
            "prediction_vs_measurement": self.prediction_vs_measurement,
            "verified_front": self.verified_front,
            "pte_artifacts": self.pte_artifacts,
        }

    # -- tool checks ----------------------------------------------------------------------------------
    def search_finished(self) -> CheckResult:
        s = self.search
        evidence = [_store(f"hilnas_searches/{s.id}", f"status={s.status} finished_at={s.finished_at} error={s.error}")]
        if s.status == "finished":
            return "satisfied", f"Search {s.id} has status 'finished'.", evidence
        return "unsatisfied", f"Search {s.id} has status {s.status!r}, not 'finished'.", evidence

    def no_lost_trials(self) -> CheckResult:
        states = Counter(t.state for t in self.trials)
        finished = sum(states[s] for s in FINISHED_STATES)
        unfinished = {state: n for state, n in states.items() if state not in FINISHED_STATES}
        evidence = [_store("hilnas_trials", f"trial states: {dict(states)}; budget {self.search.n_trials_target}")]
        if unfinished:
            return (
                "unsatisfied",
                f"{sum(unfinished.values())} trial(s) never reached a final state: {unfinished}.",
                evidence,
            )
        if finished != self.search.n_trials_target:
            return (
                "unsatisfied",
                f"{finished} trials finished but the budget was {self.search.n_trials_target}.",
                evidence,
            )
        return "satisfied", f"All {finished} trials of the budget reached a final state.", evidence

    def predictor_accuracy(self) -> CheckResult:
        """The selected stored predictor's held-out metrics for each (device, backend, phase) the search measured."""
        keys = sorted({(m.device, m.backend, m.phase) for m in self.measurements})
        table = Base.metadata.tables.get(PREDICTOR_TABLE)
        if not keys:
            reason = f"Search {self.search_id} stored no device measurement, so no predictor applies to it."
            return "unsatisfied", reason, [_store("hilnas_measurements", "no measurement for this search")]
        if table is None:
            reason = "This hilnas build has no latency-predictor table, so no predictor is stored."
            return "unsatisfied", reason, []
        problems: list[str] = []
        evidence: list[Evidence] = []
        with session_scope(self.db_url) as session:
            for device, backend, phase in keys:
                row = session.execute(
                    select(table.c.id, table.c.name, table.c.metrics)
                    .where(table.c.device == device, table.c.backend == backend, table.c.phase == phase)
                    .where(table.c.selected.is_(True))
                    .order_by(table.c.id.desc())
                ).first()
                where = f"{device}/{backend}/{phase}"
                if row is None:
                    problems.append(f"no selected latency predictor is stored for {where}")
                    continue
                held_out = (row.metrics or {}).get("random") or {}
                within, tau = held_out.get("within_10"), held_out.get("kendall_tau")
                evidence.append(_store(f"{PREDICTOR_TABLE}/{row.id}", f"{where} {row.name}: random split {held_out}"))
                if within is None or tau is None:
                    problems.append(f"the predictor for {where} records no held-out within-10% share or Kendall tau")
                elif within < PREDICTOR_WITHIN_10_BAR or tau < PREDICTOR_TAU_BAR:
                    problems.append(f"the predictor for {where} has {within:.0%} within ±10% and Kendall tau {tau:.2f}")
        if problems:
            reason = "; ".join(problems)
            return "unsatisfied", reason[0].upper() + reason[1:] + ".", evidence
        bar = f"≥ {PREDICTOR_WITHIN_10_BAR:.0%} within ±10%, tau ≥ {PREDICTOR_TAU_BAR}"
        return (
            "satisfied",
            f"The selected predictors for {len(keys)} measured setting(s) meet the bar ({bar}).",
            evidence,
        )

    def prediction_vs_measurement(self) -> CheckResult:
        pairs = [
            (m.median_ms, float(m.extra["predicted_ms"]))
            for m in self.measurements
            if m.extra and m.extra.get("predicted_ms") is not None and m.median_ms > 0
        ]
        if not pairs:
            return (
                "unsatisfied",
                f"No measurement of search {self.search_id} carries a predicted latency, so no prediction was "
                "checked against the device.",
                [_store("hilnas_measurements", f"{len(self.measurements)} measurements, none with extra.predicted_ms")],
            )
        mape = sum(abs(p - m) / m for m, p in pairs) / len(pairs)
        evidence = [_store("hilnas_measurements", f"{len(pairs)} predicted/measured pairs, MAPE {mape:.3%}")]
        verdict = "satisfied" if mape <= PREDICTION_MAPE_BAR else "unsatisfied"
        return verdict, f"MAPE {mape:.2%} over {len(pairs)} points (bar {PREDICTION_MAPE_BAR:.0%}).", evidence

    def verified_front(self) -> CheckResult:
        measured = {m.trial_id for m in self.measurements if m.trial_id is not None}
        front = [t for t in self.trials if t.is_pareto and t.state == "complete" and t.feasible]
        verified = [t.number for t in front if t.id in measured]
        evidence = [_store("hilnas_trials", f"front trials {sorted(t.number for t in front)}; measured {verified}")]
        if len(verified) >= MIN_VERIFIED_FRONT:
            return "satisfied", f"{len(verified)} front trials have device measurements.", evidence
        return (
            "unsatisfied",
            f"Only {len(verified)} of {len(front)} front trial(s) have a device measurement "
            f"(at least {MIN_VERIFIED_FRONT} needed).",
            evidence,
        )

    def pte_artifacts(self) -> CheckResult:
        exported = [a for a in self.artifacts if a.kind == "pte" or a.path.endswith(".pte")]
        if not exported:
            return (
                "unsatisfied",
                f"No exported .pte artifact is stored for search {self.search_id}.",
                [_store("hilnas_artifacts", f"{len(self.artifacts)} artifacts, none is a .pte")],
            )
        problems: list[str] = []
        evidence: list[Evidence] = []
        for artifact in exported:
            problem = _pte_problem(Path(artifact.path), artifact.sha256)
            evidence.append(
                _store(f"hilnas_artifacts/{artifact.id}", f"{artifact.path}: {problem or 'loads and runs'}")
            )
            if problem:
                problems.append(f"{artifact.path} {problem}")
        if problems:
            return "unsatisfied", "; ".join(problems) + ".", evidence
        return "satisfied", f"All {len(exported)} .pte artifact(s) load and run in the ExecuTorch runtime.", evidence

    # -- the store as an evidence source for soft criteria ---------------------------------------------
    def collect(self, criteria: str) -> list[Evidence]:
        failed = [t for t in self.trials if t.state in ("failed", "invalid")]
        lines = [
            f"trial {t.number} ({t.state}, {t.attempts} attempt(s)): {t.error or '<no error recorded>'}" for t in failed
        ]
        return [
            _store(f"hilnas_searches/{self.search_id}", json.dumps(self.search.spec, default=str)[:4000], "spec"),
            _store("hilnas_trials", f"{len(failed)} failed or invalid trial(s)\n" + "\n".join(lines[:50]), "errors"),
        ]

    def overview(self) -> str:
        states = Counter(t.state for t in self.trials)
        s = self.search
        return f"search {s.id} {s.name!r}, family {s.family}, status {s.status}, trials {dict(states)}"

    def offline_verdict(self, criteria: str) -> CheckResult:
        return "error", f"{OFFLINE_NOTE} Cannot decide offline: this is a soft criterion for the LLM.", []


def _pte_problem(path: Path, sha256: str) -> str | None:
    """Why an exported program fails (missing, changed, a method that does not load or run on zero inputs),
    or None when every method runs."""
    if not path.is_file():
        return "does not exist"
    if file_sha256(path) != sha256:
        return "does not match its recorded SHA-256"
    try:
        import torch
        from executorch.runtime import Runtime

        program = Runtime.get().load_program(path)
        if not program.method_names:
            return "has no method"
        for name in sorted(program.method_names):  # e.g. forward, or an LLM's prefill and decode
            method = program.load_method(name)
            meta = method.metadata
            inputs = [
                torch.zeros(tuple(info.sizes()), dtype=_torch_dtype(info.dtype()))
                for info in (meta.input_tensor_meta(i) for i in range(meta.num_inputs()))
            ]
            method.execute(inputs)
    except Exception as exc:  # the runtime raises RuntimeError/ValueError subclasses that vary by version
        return f"does not load or run ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
    return None


def _torch_dtype(code: int):  # noqa: ANN202 - returns a torch.dtype; torch is imported lazily
    """torch dtype for the runtime's ScalarType code (c10's numbering)."""
    import torch

    codes = {
        0: torch.uint8,
        1: torch.int8,
        2: torch.int16,
        3: torch.int32,
        4: torch.int64,
        5: torch.float16,
        6: torch.float32,
        7: torch.float64,
        11: torch.bool,
        15: torch.bfloat16,
    }
    if code not in codes:
        raise ValueError(f"input dtype code {code} is not supported by this check")
    return codes[code]
