"""The MobileLLM-Flash family: candidates are measured on the device through ExecuTorch.

Quality (a pruned backbone with inherited weights, briefly distilled) arrives with issue 4;
until then ``evaluate`` reports the analytic parameter count, so the objectives are
``params``, ``prefill_ms`` and ``decode_ms``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field

from hilnas.errors import UserError
from hilnas.settings import get_settings
from latency_models.protocol import ProtocolConfig
from search.families.mobilellm_flash.space import (
    ArchConfig,
    SpaceOptions,
    Workload,
    candidate_from_params,
    default_space,
)
from search.family import Evaluation, Family, FamilyOptions, InvalidCandidate, ObjectiveDefault, TrialContext
from search.space import SearchSpace


class UnstableMeasurement(RuntimeError):
    """The protocol could not pin the median down; the trial is retried instead of using the number."""


class MobileLLMFlashOptions(FamilyOptions):
    vocab_size: int = Field(4096, ge=2)
    backend: str = Field("executorch-xnnpack", description="latency backend (see latency_models.backends)")
    protocol: ProtocolConfig = Field(default_factory=ProtocolConfig)
    use_cache: bool = Field(True, description="reuse stable measurements from the store instead of re-measuring")


class MobileLLMFlashFamily(Family):
    name = "mobilellm-flash"
    description = "MobileLLM-style decoders with per-layer full/local/skipped attention, measured on ExecuTorch"
    Options = MobileLLMFlashOptions
    needs_device = True

    options: MobileLLMFlashOptions

    def default_space(self) -> SearchSpace:
        return default_space()

    def default_objectives(self) -> list[ObjectiveDefault]:
        return [
            ObjectiveDefault("params", "minimize"),
            ObjectiveDefault("prefill_ms", "minimize"),
            ObjectiveDefault("decode_ms", "minimize"),
        ]

    def candidate(self, params: dict[str, Any]) -> tuple[ArchConfig, Workload]:
        return candidate_from_params(params, SpaceOptions(vocab_size=self.options.vocab_size))

    def check_candidate(self, params: dict[str, Any]) -> None:
        self.candidate(params)

    def arch_hash(self, params: dict[str, Any]) -> str | None:
        """Hash of the architecture only (the workload's shapes are a separate part of the cache key);
        None for a candidate that cannot be built."""
        try:
            return self.candidate(params)[0].arch_hash()
        except InvalidCandidate:
            return None

    def evaluate(self, params: dict[str, Any], context: TrialContext) -> Evaluation:
        """The analytic parameter count; model quality is issue 4's (backbone, pruning, distillation)."""
        arch, _ = self.candidate(params)
        return Evaluation(metrics={"params": float(arch.n_params())}, info={"quality": "not measured before issue 4"})

    def measure(self, params: dict[str, Any], device: str, context: TrialContext) -> Evaluation:
        """Prefill and decode latency on ``device``: from the store when already measured, else on the device."""
        from latency_models.backends import get_backend
        from latency_models.measure import PHASES, build_model, measure_phase, phase_shape

        arch, workload = self.candidate(params)
        rows: dict[str, dict[str, Any]] = {}
        if self.options.use_cache:
            rows = self._cached(arch, workload, device, PHASES)
        artifacts: list[dict[str, Any]] = []
        missing = [phase for phase in PHASES if phase not in rows]
        if missing:
            backend = get_backend(self.options.backend)
            model = build_model(arch)
            workdir = Path(context.artifact_dir) / f"trial-{context.trial_number}"
            for phase in missing:
                result = measure_phase(
                    model, workload, phase, backend, device, self.options.protocol, workdir, "search"
                )
                if not result.row["stable"]:
                    raise UnstableMeasurement(
                        f"{phase} latency stayed unstable after {result.timing.attempts} attempts: the median's CI "
                        f"is +-{result.timing.ci_half_width:.1%}, the protocol asks for "
                        f"+-{self.options.protocol.ci_half_width:.1%} (is the device busy?)"
                    )
                rows[phase] = result.row
                if result.prepared.artifact is not None:
                    artifacts.append({"kind": "pte", "path": str(result.prepared.artifact), "meta": {"phase": phase}})
        metrics = {f"{phase}_ms": float(rows[phase]["median_ms"]) for phase in PHASES}
        cached = [phase for phase in PHASES if phase not in missing]
        info = {"cached_phases": cached, "shapes": {p: phase_shape(workload, p) for p in PHASES}}
        return Evaluation(metrics=metrics, measurements=list(rows.values()), artifacts=artifacts, info=info)

    def _cached(self, arch: ArchConfig, workload: Workload, device: str, phases: tuple[str, ...]) -> dict[str, Any]:
        from latency_models import cache
        from latency_models.measure import phase_shape

        try:
            found = {
                phase: cache.lookup(
                    get_settings().db_url,
                    arch.arch_hash(),
                    device,
                    self.options.backend,
                    phase,
                    phase_shape(workload, phase),
                )
                for phase in phases
            }
        except UserError:  # no reachable store from this node: measure rather than fail
            return {}
        return {phase: row for phase, row in found.items() if row is not None}
