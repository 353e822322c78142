"""The pieces of the MobileLLM-Flash pipeline that need no model: the pruned space, staged-run bookkeeping
(resume skips finished stages, keeps a stage's partial output) and the verify stage's arithmetic."""

from __future__ import annotations

import itertools

import numpy as np
import optuna
import pytest

from search.families.mobilellm_flash import verification
from search.families.mobilellm_flash.pruning import check_subarchitecture
from search.families.mobilellm_flash.space import ArchConfig, LayerConfig, Workload, pruned_candidate, pruned_space
from search.family import InvalidCandidate
from search.pareto import hypervolume
from search.spec import ConstraintSpec
from search.staged import StagedRun
from search.staged_plans import VerifyPlan
from search.verification import (
    another_round,
    errors_pct,
    most_hypervolume,
    needs_refit,
    points_to_measure,
    refit_reasons_between_rounds,
)

BACKBONE = ArchConfig(
    vocab_size=512,
    dim=96,
    head_dim=16,
    layers=[LayerConfig(n_heads=6, n_kv_heads=2, ffn_dim=256) for _ in range(6)],
    max_context=256,
)


def test_every_point_of_the_pruned_space_is_a_subarchitecture_of_the_backbone() -> None:
    space = pruned_space(BACKBONE, Workload(prefill_len=64, decode_kv_len=128))
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3))
    built = 0
    for _ in range(200):
        params = space.sample(study.ask())
        try:
            arch = pruned_candidate(params, BACKBONE)
        except InvalidCandidate as exc:
            assert "skips attention" in str(exc)  # the only invalid draw: every layer skipped
            continue
        check_subarchitecture(BACKBONE, arch)
        assert arch.head_dim == BACKBONE.head_dim and arch.vocab_size == BACKBONE.vocab_size
        assert len(arch.layers) <= len(BACKBONE.layers) and arch.dim <= BACKBONE.dim
        built += 1
    assert built > 150


def test_a_candidate_wider_than_the_backbone_is_refused_with_the_reason() -> None:
    params = {
        "n_layers": 7,
        "dim": 96,
        "n_kv_heads": 1,
        "heads_per_kv": 1,
        "ffn_dim": [64] * 7,
        "attention": ["full"] * 7,
        "window": 16,
    }
    with pytest.raises(InvalidCandidate, match="more than the backbone's 6"):
        pruned_candidate(params, BACKBONE)


def test_a_resumed_run_skips_finished_stages_and_sees_a_failed_stage_partial_output(db_url: str) -> None:
    calls: list[str] = []
    run = StagedRun.create(db_url, "test", "t", {"x": 1}, ["first", "second"])

    def first(context):  # noqa: ANN001, ANN202
        calls.append("first")
        return {"value": 41}

    def failing_second(context):  # noqa: ANN001, ANN202
        calls.append("second")
        context.checkpoint({"search_id": 7})
        raise RuntimeError("node lost")

    with pytest.raises(RuntimeError, match="node lost"):
        run.execute({"first": first, "second": failing_second})
    assert run.status() == "failed"
    assert [s["status"] for s in run.stages()] == ["done", "failed"]

    seen = {}

    def second(context):  # noqa: ANN001, ANN202
        calls.append("second")
        seen.update(previous=context.outputs["first"]["value"], partial=context.output_so_far.get("search_id"))
        return {"total": context.outputs["first"]["value"] + 1}

    resumed = StagedRun.load(db_url, run.run_id, "test")
    outputs = resumed.execute({"first": first, "second": second})
    assert calls == ["first", "second", "second"]
    assert seen == {"previous": 41, "partial": 7}
    assert outputs["second"] == {"total": 42}
    assert resumed.status() == "finished"


def _candidate(number: int, loss: float, prefill: float, decode: float, measured: dict | None = None) -> dict:
    return {"number": number, "loss": loss, "predicted": {"prefill": prefill, "decode": decode}, "measured": measured}


def test_the_front_uses_measurements_over_predictions_and_respects_constraints() -> None:
    a = _candidate(0, 3.0, 10.0, 1.0)
    b = _candidate(1, 2.5, 20.0, 2.0)
    c = _candidate(2, 2.6, 15.0, 1.5, measured={"prefill": 30.0, "decode": 3.0})  # dominated once measured
    d = _candidate(3, 2.0, 40.0, 4.0)
    candidates = [a, b, c, d]
    assert [x["number"] for x in verification.front(candidates, [], measured_only=False)] == [3, 1, 0]
    limit = [ConstraintSpec(metric="decode_ms", max=2.5)]
    assert [x["number"] for x in verification.front(candidates, limit, measured_only=False)] == [1, 0]
    assert [x["number"] for x in verification.front(candidates, [], measured_only=True)] == [2]
    assert verification.front(candidates, limit, measured_only=True) == []


def test_verification_picks_the_front_points_that_dominate_the_most_hypervolume() -> None:
    # A two-objective front: a knee at (0.2, 0.2) and points along both axes.
    points = np.array([[0.0, 1.0], [0.05, 0.6], [0.2, 0.2], [0.6, 0.05], [1.0, 0.0]])
    items = [{"number": i} for i in range(len(points))]
    assert [x["number"] for x in most_hypervolume(items, points, 1)] == [2]  # the knee alone dominates most
    picked = most_hypervolume(items, points, 3)
    assert [x["number"] for x in picked] == [1, 2, 3]  # greedy: the knee, then its neighbours; order kept
    best = max(hypervolume(points[list(trio)], [1.1, 1.1]) for trio in itertools.combinations(range(len(points)), 3))
    assert hypervolume(points[[1, 2, 3]], [1.1, 1.1]) == pytest.approx(best)
    assert most_hypervolume(items[:2], points[:2], 3) == items[:2]


def test_a_later_round_picks_what_adds_most_to_the_front_already_measured() -> None:
    points = np.array([[0.0, 1.0], [0.05, 0.6], [0.2, 0.2], [0.6, 0.05], [1.0, 0.0]])
    items = [{"number": i} for i in range(len(points))]
    # With the knee measured, the best single addition is one of its neighbours, not a point near the knee.
    near_knee = np.array([[0.21, 0.21]])
    alone = most_hypervolume(items, points, 1)
    after = most_hypervolume(items, points, 1, kept=near_knee)
    assert [x["number"] for x in alone] == [2]
    assert [x["number"] for x in after] in ([1], [3])
    gains = {i: hypervolume(np.vstack([near_knee, points[[i]]]), [1.1, 1.1]) for i in range(len(points))}
    assert gains[after[0]["number"]] == pytest.approx(max(gains.values()))


def test_points_are_weighed_on_the_scale_of_the_whole_search_not_the_front_alone() -> None:
    # Scaled over the front alone, the middle point looks best; among all candidates (one far worse point),
    # the front is a corner of the box and an extreme point dominates more.
    points = np.array([[0.0, 0.3], [0.2, 0.2], [0.3, 0.0]])
    items = [{"number": i} for i in range(len(points))]
    assert [x["number"] for x in most_hypervolume(items, points, 1)] == [1]
    whole = np.vstack([points, [[1.0, 1.0]]])
    assert [x["number"] for x in most_hypervolume(items, points, 1, population=whole)] in ([0], [2])


def test_a_round_measures_only_unmeasured_front_points_and_never_retries_a_failed_one() -> None:
    a = _candidate(0, 3.0, 10.0, 1.0)
    b = _candidate(1, 2.5, 20.0, 2.0, measured={"prefill": 20.0, "decode": 2.0})
    c = _candidate(2, 2.0, 40.0, 4.0)
    c["failed"] = "export failed at operator aten::foo"
    d = _candidate(3, 2.2, 30.0, 3.0)
    e = _candidate(4, 3.5, 50.0, 5.0)  # dominated
    candidates = [a, b, c, d, e]

    def front_of(pool: list[dict]) -> list[dict]:
        return verification.front(pool, [], False)

    def point_of(candidate: dict) -> np.ndarray:
        return verification.objective_points([candidate])[0]

    assert [x["number"] for x in points_to_measure(candidates, front_of, point_of, 5)] == [3, 0]
    assert len(points_to_measure(candidates, front_of, point_of, 1)) == 1
    for x in (a, d):
        x["measured"] = dict(x["predicted"])
    assert points_to_measure(candidates, front_of, point_of, 5) == []


@pytest.mark.parametrize(
    ("stop_when_accurate", "reasons", "rounds_done", "measured_now", "expected"),
    [
        (True, {}, 1, 2, False),  # the predictor kept its promise: done
        (True, {"decode": "off"}, 1, 2, True),  # refitted: check the new front
        (True, {"decode": "off"}, 3, 2, False),  # no rounds left
        (False, {}, 1, 2, True),  # spend every round
        (False, {}, 1, 0, False),  # the whole front is measured already
    ],
)
def test_verification_goes_on_while_rounds_are_left_and_there_is_reason(
    stop_when_accurate: bool, reasons: dict, rounds_done: int, measured_now: int, expected: bool
) -> None:
    plan = VerifyPlan(max_points=2, max_rounds=3, stop_when_accurate=stop_when_accurate)
    assert another_round(plan, reasons, rounds_done, measured_now) is expected


def test_between_rounds_the_predictor_is_refitted_when_it_was_off_or_when_every_round_is_spent() -> None:
    off = {"decode": "decode: mean error 30% on the front"}
    assert refit_reasons_between_rounds(VerifyPlan(), {}, 2) == []
    assert refit_reasons_between_rounds(VerifyPlan(), off, 2) == [off["decode"]]
    spend = VerifyPlan(stop_when_accurate=False)
    assert refit_reasons_between_rounds(spend, off, 2) == [off["decode"]]
    assert refit_reasons_between_rounds(spend, {}, 2) == ["2 front points measured since the last fit"]


def test_a_refit_is_asked_for_only_when_errors_exceed_the_stated_accuracy() -> None:
    measured = [
        _candidate(0, 1.0, 11.0, 1.0, measured={"prefill": 10.0, "decode": 1.0}),  # prefill +10%, decode 0%
        _candidate(1, 1.0, 9.0, 1.02, measured={"prefill": 10.0, "decode": 1.0}),  # prefill -10%, decode +2%
    ]
    errors = errors_pct(measured)
    assert errors["prefill"] == pytest.approx([10.0, -10.0])
    reasons = needs_refit(errors, {"prefill": 4.0, "decode": 4.0}, tolerance=1.5, min_error_pct=3.0)
    assert set(reasons) == {"prefill"} and "10.0%" in reasons["prefill"]
    assert needs_refit(errors, {"prefill": 8.0, "decode": 1.0}, tolerance=1.5, min_error_pct=3.0) == {}
