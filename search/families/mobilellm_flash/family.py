"""The MobileLLM-Flash family: pruned children of a trained backbone, measured on ExecuTorch.

Two modes. Without a backbone (issue 3's latency work) a candidate is any architecture of
``default_space`` and its only quality figure is its parameter count. With ``backbone_arch`` set
(the staged pipeline in ``pipeline.py``), a candidate is a sub-architecture of the backbone
(``pruned_space``); with ``backbone_path`` too, it inherits the backbone's most important
weights, is distilled from it for a fixed token budget and scored by held-out loss. Its latency
is either measured on the device (``latency: measured``) or read from the device's calibrated
predictor (``latency: predicted``, MobileLLM-Flash's search stage, which needs no device at all).
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from hilnas.errors import UserError
from hilnas.settings import get_settings
from latency_models.protocol import ExportWorkers, ProtocolConfig, timing_label
from search.families.mobilellm_flash import FAMILY
from search.families.mobilellm_flash.space import (
    ArchConfig,
    SpaceOptions,
    Workload,
    candidate_from_params,
    default_space,
    pruned_candidate,
    pruned_space,
)
from search.family import Evaluation, Family, FamilyOptions, InvalidCandidate, ObjectiveDefault, TrialContext
from search.space import SearchSpace


class UnstableMeasurement(RuntimeError):
    """The protocol could not pin the median down; the trial is retried instead of using the number."""


class MobileLLMFlashOptions(FamilyOptions):
    vocab_size: int = Field(4096, ge=2)
    backend: str = Field("executorch-xnnpack", description="latency backend (see latency_models.backends)")
    protocol: ProtocolConfig = Field(default_factory=ProtocolConfig)
    export_workers: ExportWorkers = None
    use_cache: bool = Field(True, description="reuse stable measurements from the store instead of re-measuring")
    backbone_arch: ArchConfig | None = Field(None, description="when set, candidates are prunings of this backbone")
    backbone_path: str | None = Field(None, description="the backbone's cache folder, to score candidates' quality")
    importance_path: str | None = Field(None, description="JSON of the backbone's activation importance scores")
    workload: Workload = Field(default_factory=Workload, description="shapes pruned candidates are timed at")
    latency: Literal["measured", "predicted"] = "measured"
    predictor_device: str | None = Field(None, description="whose calibrated predictor 'predicted' reads")
    distill_tokens: int = Field(32_768, ge=0, description="continued-pretraining budget per candidate")
    distill_batch: int = Field(8, ge=1)
    threads: int = Field(1, ge=1, description="torch threads per quality evaluation")
    multiple_choice: str | None = Field(None, description="a local JSONL multiple-choice set for zero-shot accuracy")


class MobileLLMFlashFamily(Family):
    name = FAMILY
    description = "MobileLLM-style decoders with per-layer full/local/skipped attention, measured on ExecuTorch"
    Options = MobileLLMFlashOptions

    options: MobileLLMFlashOptions

    def __init__(self, options: MobileLLMFlashOptions | None = None) -> None:
        super().__init__(options)
        if self.options.backbone_path is not None and self.options.backbone_arch is None:
            raise UserError("The mobilellm-flash option backbone_path needs backbone_arch beside it.")

    @property
    def pruned(self) -> bool:
        """Candidates are prunings of ``backbone_arch``; scoring their quality also needs ``backbone_path``."""
        return self.options.backbone_arch is not None

    @property
    def needs_device(self) -> bool:
        return self.options.latency == "measured"

    def default_space(self) -> SearchSpace:
        if self.pruned:
            return pruned_space(self.options.backbone_arch, self.options.workload)
        return default_space()

    def default_objectives(self) -> list[ObjectiveDefault]:
        scored = self.options.backbone_path is not None
        quality = ObjectiveDefault("loss", "minimize") if scored else ObjectiveDefault("params", "minimize")
        return [quality, ObjectiveDefault("prefill_ms", "minimize"), ObjectiveDefault("decode_ms", "minimize")]

    def candidate(self, params: dict[str, Any]) -> tuple[ArchConfig, Workload]:
        if self.pruned:
            return pruned_candidate(params, self.options.backbone_arch), self.options.workload
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
        """Held-out loss of the pruned, distilled candidate (with a backbone), else the parameter count alone;
        plus the predicted latency when latency is not measured."""
        arch, workload = self.candidate(params)
        metrics = {"params": float(arch.n_params())}
        artifacts: list[dict[str, Any]] = []
        info: dict[str, Any] = {}
        if self.options.backbone_path is not None:
            quality, checkpoint = self._quality(arch, context)
            metrics.update({k: v for k, v in quality.items() if isinstance(v, (int, float))})
            artifacts.append({"kind": "checkpoint", "path": str(checkpoint), "meta": {"arch_hash": arch.arch_hash()}})
        if self.options.latency == "predicted":
            from latency_models.fitting import predict_ms

            device = self.options.predictor_device or get_settings().device
            db_url = context.db_url or get_settings().db_url
            predicted = predict_ms(db_url, device, self.options.backend, arch, workload)
            for phase, (ms, _std) in predicted.items():
                metrics[f"{phase}_ms"] = float(ms)
            info["latency"] = f"predicted by the selected {self.options.backend} predictor of {device}"
        return Evaluation(metrics=metrics, artifacts=artifacts, info=info)

    def _quality(self, arch: ArchConfig, context: TrialContext) -> tuple[dict[str, float], Path]:
        """Prune the backbone to ``arch``, distill, score; the distilled weights are kept for export."""
        from evaluators.lm_quality import candidate_quality
        from search.families.quant_rotation.checkpoint import save_model

        backbone = _backbone(self.options.backbone_path)
        quality, student = candidate_quality(
            backbone.model,
            _importance(self.options.importance_path),
            arch,
            backbone.train_tokens,
            backbone.val_tokens,
            budget_tokens=self.options.distill_tokens,
            seed=context.seed,
            threads=self.options.threads,
            batch_size=self.options.distill_batch,
            seq_len=backbone.info["config"]["seq_len"],
            eval_windows=backbone.info["heldout"]["windows"],
        )
        if self.options.multiple_choice:
            from evaluators.lm_quality import multiple_choice_accuracy

            accuracy = multiple_choice_accuracy(student, backbone.tokenizer.encode, self.options.multiple_choice)
            quality.update({f"mc_{k}": v for k, v in accuracy.items()})
        checkpoint = Path(context.artifact_dir) / f"trial-{context.trial_number}" / "model.pt"
        save_model(student, checkpoint)
        return quality, checkpoint

    def measure(self, params: dict[str, Any], device: str, context: TrialContext) -> Evaluation:
        """Prefill and decode latency on ``device``: from the store when already measured, else on the device
        (exported by this process's export workers when the backend writes programs, then timed here). Either
        way at the drift exponent the device's predictors were fitted with (``drift_exponent``), so that
        measured and predicted latencies compare."""
        from latency_models.backends import get_backend
        from latency_models.drift_exponent import at_exponent
        from latency_models.export_pool import exporter, flash_jobs
        from latency_models.measure import PHASES, measure_architecture, phase_shape
        from latency_models.reference import drift_reference, reference_kind

        arch, workload = self.candidate(params)
        db_url = context.db_url or get_settings().db_url
        exponents = self._drift_exponents(db_url, device)
        rows: dict[str, dict[str, Any]] = {}
        if self.options.use_cache:
            rows = self._cached(db_url, arch, workload, device, PHASES)
            rows = {phase: at_exponent(row, exponents[phase]) for phase, row in rows.items()}
        artifacts: list[dict[str, Any]] = []
        missing = tuple(phase for phase in PHASES if phase not in rows)
        if missing:
            backend = get_backend(self.options.backend)
            protocol = self.options.protocol
            workdir = Path(context.artifact_dir) / f"trial-{context.trial_number}"
            pool = exporter(backend, protocol.threads, self.options.export_workers)
            if pool is not None:
                pool.submit(workdir, flash_jobs(arch, workload, workdir, missing))
            # each phase beside the reference that drifts as it does (a decode step: the rung nearest its size)
            references = {
                phase: drift_reference(
                    backend, device, protocol, db_url, reference_kind(phase, arch), pool, exponent=exponents[phase]
                )
                for phase in missing
            }
            exported = pool.take(workdir, missing) if pool is not None else None
            results = measure_architecture(
                arch, workload, backend, device, protocol, workdir, missing, "search", references, exported
            )
            for phase, result in results.items():
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

    def _drift_exponents(self, db_url: str, device: str) -> dict[str, float]:
        """Per phase, the drift exponent of the device's selected predictor (``FULL`` when no store answers)."""
        from latency_models.drift_exponent import FULL, device_exponent
        from latency_models.measure import PHASES

        try:
            return {phase: device_exponent(db_url, device, self.options.backend, phase) for phase in PHASES}
        except UserError:  # no reachable store from this node: measure as before any predictor was fitted
            return dict.fromkeys(PHASES, FULL)

    def _cached(
        self, db_url: str, arch: ArchConfig, workload: Workload, device: str, phases: tuple[str, ...]
    ) -> dict[str, Any]:
        from latency_models import cache
        from latency_models.measure import phase_shape

        try:
            found = {
                phase: cache.lookup(
                    db_url,
                    arch.arch_hash(),
                    device,
                    self.options.backend,
                    phase,
                    phase_shape(workload, phase),
                    timing_label(self.options.protocol),
                )
                for phase in phases
            }
        except UserError:  # no reachable store from this node: measure rather than fail
            return {}
        return {phase: row for phase, row in found.items() if row is not None}


@lru_cache(maxsize=2)
def _backbone(path: str):  # noqa: ANN202 - a Backbone; loaded once per worker process
    from search.families.mobilellm_flash.backbone import load_backbone

    return load_backbone(Path(path))


@lru_cache(maxsize=2)
def _importance(path: str | None):  # noqa: ANN202 - an Importance
    from search.families.mobilellm_flash.importance import Importance

    if path is None:
        raise UserError("Pruned mobilellm-flash candidates need importance_path (the pipeline writes it).")
    return Importance.from_dict(json.loads(Path(path).read_text()))
