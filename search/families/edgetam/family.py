"""The EdgeTAM family: J&F against per-frame latency for SAM 2-style trackers with compressed memory.

Quality: a teacher (dense memory, the space's widest and deepest encoder, longest bank) is trained once
on the training split and cached; each candidate inherits what fits from it, is distilled for a fixed
number of clips, and is scored by DAVIS 2017 J&F on the held-out split (its weights are kept as a trial
artifact). Latency: the candidate's per-frame time at its full memory bank, split into image encoder,
memory encoder, memory attention and mask decoder, either measured on the device (cache first) or, in
the staged pipeline's search (``latency: predicted``), read from the device's calibrated predictors.
Data: a DAVIS 2017 folder when ``davis_root`` is given, else generated synthetic videos.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field

from evaluators.vos.davis import DavisDataset, VideoSequence
from evaluators.vos.synthetic import SyntheticConfig, cached_synthetic_davis
from hilnas.errors import UserError
from hilnas.settings import get_settings
from latency_models.backends import get_backend
from latency_models.export_pool import exporter
from latency_models.protocol import ExportWorkers, ProtocolConfig, timing_label
from latency_models.reference import drift_reference
from search.families.edgetam import FAMILY
from search.families.edgetam.latency import COMPONENTS, component_jobs, measure_components, measurement_rows
from search.families.edgetam.model import EdgeTAM, EdgeTAMConfig
from search.families.edgetam.space import (
    ENCODER_WIDTHS,
    MAX_ATTENTION_LAYERS,
    MAX_ENCODER_DEPTH,
    MAX_MEMORY_FRAMES,
    candidate_config,
    default_space,
)
from search.families.edgetam.training import TrainingBudget, evaluate_jf, inherit_weights, train
from search.family import Evaluation, Family, FamilyOptions, InvalidCandidate, ObjectiveDefault, TrialContext
from search.space import SearchSpace

PERCEIVER_ONLY = ("global_latents", "patch_latents")


class UnstableMeasurement(RuntimeError):
    """The protocol could not pin a component's median down; the driver retries the trial."""


class SyntheticOptions(BaseModel):
    """Size of the generated videos used when no DAVIS folder is given."""

    model_config = ConfigDict(extra="forbid")
    train_videos: int = Field(16, ge=1)
    val_videos: int = Field(6, ge=1)
    frames: int = Field(10, ge=3)
    height: int = Field(64, ge=16)
    width: int = Field(96, ge=16)
    seed: int = 0

    def config(self) -> SyntheticConfig:
        return SyntheticConfig(**self.model_dump())


class EdgeTAMRecipe(FamilyOptions):
    """Data, transformer widths and training budgets: what the teacher and every candidate share."""

    davis_root: str | None = Field(None, description="a DAVIS 2017 folder; None generates synthetic videos")
    davis_resolution: str = "480p"
    train_split: str = "train"
    eval_split: str = "val"
    eval_videos: int | None = Field(None, ge=1, description="score only the first N held-out videos")
    synthetic: SyntheticOptions = Field(default_factory=SyntheticOptions)
    dim: int = Field(64, ge=8)
    memory_dim: int = Field(32, ge=4)
    heads: int = Field(2, ge=1)
    teacher_resolution: int = Field(64, ge=16)
    teacher_steps: int = Field(600, ge=0)
    distill_steps: int = Field(150, ge=0)
    clip_frames: int = Field(4, ge=2)
    learning_rate: float = Field(3e-3, gt=0)
    distill_weight: float = Field(1.0, ge=0)
    cache_dir: str | None = Field(None, description="where generated videos and the teacher are kept")


class EdgeTAMOptions(EdgeTAMRecipe):
    """The recipe plus how latency is obtained."""

    backend: str = Field("executorch-xnnpack", description="a latency_models backend name")
    protocol: ProtocolConfig = Field(default_factory=ProtocolConfig, description="how each component is timed")
    export_workers: ExportWorkers = None
    use_cache: bool = Field(True, description="reuse stable measurements from the store instead of re-measuring")
    latency: Literal["measured", "predicted"] = "measured"
    predictor_device: str | None = Field(None, description="whose calibrated predictors 'predicted' reads")
    predicted: list[Literal[COMPONENTS]] = Field(  # type: ignore[valid-type]
        default_factory=lambda: list(COMPONENTS), description="components whose latency 'predicted' reports"
    )


class EdgeTAMFamily(Family):
    name = FAMILY
    description = "SAM 2-style video object segmentation with dense, pooled or 2D-perceiver memory"
    Options = EdgeTAMOptions

    options: EdgeTAMOptions

    def __init__(self, options: EdgeTAMOptions | None = None) -> None:
        super().__init__(options)
        self._videos: dict[str, list[VideoSequence]] = {}
        self._teacher: EdgeTAM | None = None

    @property
    def needs_device(self) -> bool:
        return self.options.latency == "measured"

    # ----------------------------------------------------------------- space and objectives

    def default_space(self) -> SearchSpace:
        return default_space()

    def default_objectives(self) -> list[ObjectiveDefault]:
        return [
            ObjectiveDefault("jf", "maximize", 0.0),
            ObjectiveDefault("frame_ms", "minimize"),
            ObjectiveDefault("params", "minimize"),
        ]

    def config(self, params: dict[str, Any]) -> EdgeTAMConfig:
        """The candidate's architecture (``InvalidCandidate`` with the reason when it cannot be built)."""
        return candidate_config(params, self.options.dim, self.options.memory_dim, self.options.heads)

    def check_candidate(self, params: dict[str, Any]) -> None:
        self.config(params)

    def arch_hash(self, params: dict[str, Any]) -> str | None:
        try:
            architecture = _architecture(self.config(params))
        except InvalidCandidate:
            return None  # never measured, so nothing to key a cache on
        return hashlib.sha256(json.dumps(architecture, sort_keys=True).encode()).hexdigest()

    def cache_keys(self, params: dict[str, Any]) -> dict[str, tuple[str, dict[str, Any]]]:
        """{phase: (architecture hash, shape)} of the rows ``measure`` writes (``InvalidCandidate`` if unbuildable)."""
        config = self.config(params)
        return {f"edgetam_{name}": (self.arch_hash(params), _shape(config)) for name in COMPONENTS}

    def teacher_config(self) -> EdgeTAMConfig:
        return EdgeTAMConfig(
            resolution=self.options.teacher_resolution,
            encoder_width=max(ENCODER_WIDTHS),
            encoder_depth=MAX_ENCODER_DEPTH,
            dim=self.options.dim,
            memory_dim=self.options.memory_dim,
            heads=self.options.heads,
            attention_layers=MAX_ATTENTION_LAYERS,
            memory_frames=MAX_MEMORY_FRAMES,
            memory="dense",
        )

    # ----------------------------------------------------------------- data and teacher

    def videos(self, split: str) -> list[VideoSequence]:
        """The split's videos, every frame annotated (a first-frame-only split can be neither trained on nor
        scored: ``hilnas edgetam predict`` writes its masks instead)."""
        if split not in self._videos:
            videos = self._dataset().load_split(split)
            for video in videos:
                if not video.fully_annotated:
                    raise UserError(
                        f"Sequence {video.name!r} of DAVIS split {split!r} is annotated only on its first frame "
                        "(a test-dev layout), so it cannot be trained on or scored; use it with `hilnas edgetam "
                        "predict` to write predicted masks for submission."
                    )
            self._videos[split] = videos
        return self._videos[split]

    def _dataset(self) -> DavisDataset:
        if self.options.davis_root is not None:
            return DavisDataset(self.options.davis_root, self.options.davis_resolution)
        return cached_synthetic_davis(self._cache_dir(), self.options.synthetic.config())

    def _cache_dir(self) -> Path:
        if self.options.cache_dir is not None:
            return Path(self.options.cache_dir)
        return Path(get_settings().cache_dir) / "edgetam"

    def _data_identity(self) -> dict[str, Any]:
        if self.options.davis_root is not None:
            return {"davis_root": str(Path(self.options.davis_root).resolve()), "split": self.options.train_split}
        return {"synthetic": asdict(self.options.synthetic.config())}

    def teacher_path(self) -> Path:
        """Where the teacher of these options is cached (its name hashes architecture, data and budget)."""
        recipe = {
            "architecture": asdict(self.teacher_config()),
            "data": self._data_identity(),
            "budget": asdict(self._budget(self.options.teacher_steps, seed=0)),
        }
        key = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]
        return self._cache_dir() / f"teacher-{key}.pt"

    def teacher(self) -> EdgeTAM:
        """The trained teacher, loaded from the cache or trained once and cached (written atomically)."""
        if self._teacher is not None:
            return self._teacher
        path = self.teacher_path()
        model = EdgeTAM(self.teacher_config())
        if path.exists():
            model.load_state_dict(torch.load(path, weights_only=True))
        else:
            train(model, self.videos(self.options.train_split), self._budget(self.options.teacher_steps, seed=0))
            path.parent.mkdir(parents=True, exist_ok=True)
            handle, scratch = tempfile.mkstemp(prefix=".teacher-", suffix=".pt", dir=path.parent)
            os.close(handle)
            torch.save(model.state_dict(), scratch)
            os.replace(scratch, path)
        model.eval()
        self._teacher = model
        return model

    def _budget(self, steps: int, seed: int) -> TrainingBudget:
        return TrainingBudget(
            steps=steps, clip_frames=self.options.clip_frames, learning_rate=self.options.learning_rate, seed=seed
        )

    # ----------------------------------------------------------------- quality

    def distilled_candidate(self, config: EdgeTAMConfig, seed: int) -> tuple[EdgeTAM, int, int]:
        """A candidate that inherited from the teacher and was distilled; returns it with (inherited, total)."""
        torch.manual_seed(seed)
        teacher = self.teacher()
        model = EdgeTAM(config)
        inherited, total = inherit_weights(model, teacher.state_dict())
        budget = self._budget(self.options.distill_steps, seed=seed)
        train(model, self.videos(self.options.train_split), budget, teacher, self.options.distill_weight)
        return model, inherited, total

    def held_out_videos(self) -> list[VideoSequence]:
        videos = self.videos(self.options.eval_split)
        return videos[: self.options.eval_videos] if self.options.eval_videos else videos

    def evaluate(self, params: dict[str, Any], context: TrialContext) -> Evaluation:
        """J&F of the distilled candidate (its weights saved as a checkpoint artifact), plus the predicted
        per-component latency when latency is not measured."""
        torch.set_num_threads(1)  # one Ray CPU per trial
        config = self.config(params)
        model, inherited, total = self.distilled_candidate(config, context.seed)
        result = evaluate_jf(model, self.held_out_videos())
        metrics = result.as_metrics() | {
            "params": float(model.parameter_count()),
            "memory_tokens": float((config.memory_frames + 1) * config.tokens_per_frame()),
        }
        checkpoint = Path(context.artifact_dir) / f"trial-{context.trial_number}" / "edgetam.pt"
        save_checkpoint(model, checkpoint)
        info: dict[str, Any] = {"inherited_tensors": inherited, "tensors": total}
        if self.options.latency == "predicted":
            device = self.options.predictor_device or get_settings().device
            metrics |= self.predicted_ms(config, context.db_url or get_settings().db_url, device)
            info["latency"] = f"predicted by the selected {self.options.backend} predictors of {device}"
        artifact = {"kind": "checkpoint", "path": str(checkpoint), "meta": {"arch_hash": self.arch_hash(params)}}
        return Evaluation(metrics=metrics, artifacts=[artifact], info=info)

    def predicted_ms(self, config: EdgeTAMConfig, db_url: str, device: str) -> dict[str, float]:
        """``<component>_ms`` of every component from the device's selected stored predictors."""
        import pandas as pd

        from latency_models.fitting import predict_phase_ms
        from search.families.edgetam.features import phase_features

        predicted = {}
        for name in self.options.predicted:
            phase = f"edgetam_{name}"
            try:
                frame = pd.DataFrame([phase_features(config, phase)])
                predicted[f"{name}_ms"] = predict_phase_ms(db_url, device, self.options.backend, phase, frame)[0]
            except UserError as exc:
                raise UserError(
                    f"No EdgeTAM latency predictor for {name} is stored for {device} ({self.options.backend}); "
                    "the calibrate stage of `hilnas edgetam run` fits them."
                ) from exc
        return predicted

    # ----------------------------------------------------------------- latency

    def measure(self, params: dict[str, Any], device: str, context: TrialContext) -> Evaluation:
        """Per-component latency at the candidate's full bank, from the store when every component is already
        measured, else on the device (weights do not change the time: fresh ones)."""
        config = self.config(params)
        cached = self._cached(params, device, context.db_url) if self.options.use_cache else None
        if cached is not None:
            metrics = {f"{phase.removeprefix('edgetam_')}_ms": row["median_ms"] for phase, row in cached.items()}
            return Evaluation(metrics=metrics, measurements=list(cached.values()), info={"cached": True})
        backend = get_backend(self.options.backend)
        protocol = self.options.protocol
        workdir = Path(context.artifact_dir) / f"trial-{context.trial_number}" / "edgetam-latency"
        pool = exporter(backend, protocol.threads, self.options.export_workers)
        if pool is not None:
            pool.submit(workdir, component_jobs(config, workdir))
        reference = drift_reference(backend, device, protocol, context.db_url or get_settings().db_url, exporter=pool)
        exported = pool.take(workdir, COMPONENTS) if pool is not None else None
        torch.manual_seed(0)  # the weights an export worker gave the same model (``component_program``)
        results = measure_components(EdgeTAM(config), backend, protocol, workdir, reference, exported)
        rows = measurement_rows(
            results, self.arch_hash(params), _architecture(config), _shape(config), device, backend, protocol, reference
        )
        unstable = [name for name, result in results.items() if not result.timing.stable]
        if unstable:
            raise UnstableMeasurement(f"unstable latency of {', '.join(unstable)} on {device}; retry on a quiet device")
        metrics = {f"{name}_ms": result.timing.median_ms for name, result in results.items()}
        return Evaluation(metrics=metrics, measurements=rows)

    def _cached(self, params: dict[str, Any], device: str, db_url: str | None) -> dict[str, dict[str, Any]] | None:
        """Every component's stable stored row, or None when any is missing (or no store can be reached)."""
        from latency_models import cache

        url = db_url or get_settings().db_url
        timing = timing_label(self.options.protocol)
        try:
            found = {
                phase: cache.lookup(url, arch_hash, device, self.options.backend, phase, shape, timing)
                for phase, (arch_hash, shape) in self.cache_keys(params).items()
            }
        except UserError:  # no reachable store from this node: measure rather than fail
            return None
        return found if all(row is not None for row in found.values()) else None


def save_checkpoint(model: EdgeTAM, path: Path) -> None:
    """The model's architecture and weights in one file (``load_checkpoint`` rebuilds it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"config": model.config.as_dict(), "state": model.state_dict()}, path)


def load_checkpoint(path: str | Path) -> EdgeTAM:
    data = torch.load(path, weights_only=True)
    model = EdgeTAM(EdgeTAMConfig(**data["config"]))
    model.load_state_dict(data["state"])
    return model.eval()


def _shape(config: EdgeTAMConfig) -> dict[str, Any]:
    """The measured workload beside the architecture: one object tracked with a full bank."""
    return {"memory_frames": config.memory_frames, "resolution": config.resolution, "objects": 1}


def _architecture(config: EdgeTAMConfig) -> dict[str, Any]:
    """The config without the perceiver's settings when they do not apply (so equal models hash equal)."""
    architecture = config.as_dict()
    if config.memory != "perceiver":
        for name in PERCEIVER_ONLY:
            architecture.pop(name)
    return architecture
