"""Judging hilnas's own searches: tool checks decided against the store, soft criteria sent to the LLM."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from openai_compatible_server import Scripted, openai_compatible_server
from sqlalchemy import select
from typer.testing import CliRunner

from agents.judge.pipeline import search_requirements
from agents.judge.runs import judge_search
from agents.judge.store import save_judgment
from agents.llm import LLMGateway
from db.models import Artifact, Base, JudgeRun, Measurement, Search, Trial
from db.session import session_scope
from hilnas.errors import UserError
from search.recorder import file_sha256


def _add_search(db_url: str | None, *, status: str, target: int, states: list[str], pareto: set[int]) -> int:
    with session_scope(db_url) as session:
        search = Search(
            name="judged",
            family="toy",
            spec={"name": "judged", "family": "toy"},
            objectives=[{"name": "latency_ms", "direction": "minimize"}],
            status=status,
            optuna_study_name=f"study-{status}-{target}",
            n_trials_target=target,
        )
        session.add(search)
        session.flush()
        for number, state in enumerate(states):
            session.add(
                Trial(
                    search_id=search.id,
                    number=number,
                    params={"width": number},
                    state=state,
                    is_pareto=number in pareto,
                    error="ValueError: width 3 exceeds the backbone's 2 heads" if state == "failed" else None,
                )
            )
        return search.id


def _measure(db_url: str | None, search_id: int, predicted_over_measured: float) -> None:
    with session_scope(db_url) as session:
        trials = session.scalars(select(Trial).where(Trial.search_id == search_id, Trial.state == "complete"))
        for trial in trials:
            measured = 10.0 + trial.number
            session.add(
                Measurement(
                    search_id=search_id,
                    trial_id=trial.id,
                    arch_hash=f"arch-{search_id}-{trial.number}",
                    architecture={"width": trial.number},
                    device="local-cpu",
                    backend="torch-eager",
                    phase="prefill",
                    shape={"batch": 1},
                    shape_key='{"batch":1}',
                    stage="verify",
                    median_ms=measured,
                    p10_ms=measured * 0.95,
                    p90_ms=measured * 1.05,
                    cv=0.01,
                    n_samples=5,
                    samples_ms=[measured] * 5,
                    fingerprint={"cpu": "test"},
                    extra={"predicted_ms": measured * predicted_over_measured},
                )
            )


def _export_pte(path: Path) -> None:
    """A real ExecuTorch program exported here, so the check loads and runs a true .pte. Like the LLM pipeline's
    programs it has named methods and no ``forward``: prefill (y = 2x + 1) and decode (y = x - 1)."""
    import torch
    from executorch.exir import to_edge

    class Affine(torch.nn.Module):
        def __init__(self, scale: float, shift: float) -> None:
            super().__init__()
            self.scale, self.shift = scale, shift

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * self.scale + self.shift

    methods = {
        "prefill": torch.export.export(Affine(2.0, 1.0), (torch.ones(2, 3),)),
        "decode": torch.export.export(Affine(1.0, -1.0), (torch.ones(1, 3),)),
    }
    path.write_bytes(to_edge(methods).to_executorch().buffer)


def test_the_built_in_requirement_set_is_devai_format_with_tool_checks() -> None:
    task = search_requirements()
    checks = {r.id: r.check for r in task.requirements}
    assert checks == {
        0: "search_finished",
        1: "no_lost_trials",
        2: "predictor_accuracy",
        3: "verified_front",
        4: "pte_artifacts",
        5: None,  # a soft criterion, for the LLM
        6: "prediction_vs_measurement",
    }


def test_what_the_store_lacks_is_unsatisfied_with_the_reason(db_url: str) -> None:
    search_id = _add_search(db_url, status="running", target=4, states=["complete", "running"], pareto={0})
    judgment = judge_search(search_id, db_url, gateway=None)
    verdicts = judgment.verdicts
    tools = [0, 1, 2, 3, 4, 6]
    assert [verdicts[i].verdict for i in tools] == ["unsatisfied"] * 6 and verdicts[5].verdict == "error"
    assert all(verdicts[i].decided_by == "tool" for i in tools)
    assert "status 'running'" in verdicts[0].justification
    assert "1 trial(s) never reached a final state" in verdicts[1].justification
    assert f"Search {search_id} stored no device measurement" in verdicts[2].justification
    assert "Only 0 of 1 front trial(s)" in verdicts[3].justification
    assert f"No exported .pte artifact is stored for search {search_id}" in verdicts[4].justification
    assert verdicts[5].decided_by == "offline" and "soft criterion" in verdicts[5].justification
    assert "carries a predicted latency" in verdicts[6].justification
    saved = save_judgment(judgment, db_url)
    with session_scope(db_url) as session:
        run = session.get(JudgeRun, saved.run_id)
        assert (run.kind, run.search_id, run.subject) == ("search", search_id, f"search {search_id}")


def test_a_complete_search_passes_its_checks_and_a_tampered_pte_is_caught(tmp_path: Path) -> None:
    search_id = _add_search(None, status="finished", target=5, states=["complete"] * 4 + ["failed"], pareto={0, 1, 2})
    _measure(None, search_id, predicted_over_measured=1.05)
    good, tampered = tmp_path / "front0.pte", tmp_path / "front1.pte"
    _export_pte(good)
    tampered.write_bytes(good.read_bytes())
    with session_scope() as session:
        for path in (good, tampered):
            session.add(
                Artifact(search_id=search_id, kind="pte", path=str(path), sha256=file_sha256(path), size_bytes=1)
            )
    tampered.write_bytes(b"not a program any more")

    verdicts = judge_search(search_id, gateway=None).verdicts
    assert [verdicts[i].verdict for i in (0, 1, 3, 6)] == ["satisfied"] * 4
    assert "MAPE 5.00% over 4 points" in verdicts[6].justification
    assert verdicts[4].verdict == "unsatisfied"
    assert verdicts[4].justification == f"{tampered} does not match its recorded SHA-256."
    assert f"{good}: loads and runs" in [e.excerpt for e in verdicts[4].evidence]
    assert verdicts[2].verdict == "unsatisfied"  # measured, but no predictor stored yet
    assert "No selected latency predictor is stored for local-cpu/torch-eager/prefill" in verdicts[2].justification


def test_the_stored_predictor_is_held_to_its_held_out_bar() -> None:
    table = Base.metadata.tables.get("hilnas_latency_predictors")
    if table is None:
        pytest.skip("this build defines no latency-predictor table")
    search_id = _add_search(None, status="finished", target=3, states=["complete"] * 3, pareto={0, 1, 2})
    _measure(None, search_id, predicted_over_measured=1.0)
    common = {
        "device": "local-cpu",
        "backend": "torch-eager",
        "phase": "prefill",
        "n_measurements": 64,
        "cv_mape": 3.0,
        "params": {},
        "model_blob": b"",
        "created_at": datetime.now(UTC),
    }
    with session_scope() as session:
        session.execute(
            table.insert(),
            [
                dict(common, name="gbt", selected=True, metrics={"random": {"within_10": 0.90, "kendall_tau": 0.95}}),
                dict(
                    common, name="roofline", selected=False, metrics={"random": {"within_10": 1.0, "kendall_tau": 1.0}}
                ),
            ],
        )
    verdict = judge_search(search_id, gateway=None).verdicts[2]
    assert verdict.verdict == "unsatisfied"
    assert verdict.justification == (
        "The predictor for local-cpu/torch-eager/prefill has 90% within ±10% and Kendall tau 0.95."
    )
    with session_scope() as session:
        session.execute(
            table.update()
            .where(table.c.name == "gbt")
            .values(metrics={"random": {"within_10": 0.97, "kendall_tau": 0.93}})
        )
    verdict = judge_search(search_id, gateway=None).verdicts[2]
    assert verdict.verdict == "satisfied" and "gbt: random split" in verdict.evidence[0].excerpt


def test_a_soft_criterion_goes_to_the_llm_with_store_evidence() -> None:
    """Plumbing only: the local server's answer is scripted; this checks the evidence sent and the wiring."""
    search_id = _add_search(None, status="finished", target=2, states=["complete", "failed"], pareto={0})
    answer = {"verdict": "satisfied", "justification": "the error names the cause", "evidence": []}
    with openai_compatible_server() as (url, state):
        state.default = lambda body: Scripted(json.dumps(answer))
        gateway = LLMGateway("openai/gpt-4o-mini", base_url=url, backoff_s=0.01)
        verdicts = judge_search(search_id, gateway=gateway).verdicts
    assert len(state.requests) == 1  # only the soft criterion reaches the LLM; tools decide the rest
    document = json.loads(state.requests[0]["messages"][1]["content"])
    errors = next(e for e in document["evidence"] if e["note"] == "errors")
    assert "width 3 exceeds the backbone's 2 heads" in errors["text"]
    assert (verdicts[5].verdict, verdicts[5].decided_by) == ("satisfied", "llm")
    assert verdicts[0].decided_by == "tool"


def test_cli_judges_a_search_and_an_unknown_id_is_a_user_error() -> None:
    from hilnas.cli import app

    search_id = _add_search(None, status="finished", target=1, states=["complete"], pareto={0})
    result = CliRunner().invoke(app, ["judge", "search", str(search_id), "--offline"])
    assert result.exit_code == 0, result.output
    assert "offline mode" in result.output and "stored; reports:" in result.output
    missing = CliRunner().invoke(app, ["judge", "search", "999", "--offline"])
    assert isinstance(missing.exception, UserError)
    assert str(missing.exception) == "There is no search with id 999 in the store."


@pytest.fixture(autouse=True)
def _offline_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HILNAS_LLM_MODEL", raising=False)
