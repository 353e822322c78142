"""The EdgeTAM family: J&F against per-frame latency for SAM 2-style trackers with compressed memory.

Quality: a teacher (dense memory, the space's widest and deepest encoder, longest bank) is trained once
on the training split and cached; each candidate inherits what fits from it, is distilled for a fixed
number of clips, and is scored by DAVIS 2017 J&F on the held-out split. Latency: the candidate's
per-frame time at its full memory bank, split into image encoder, memory encoder, memory attention and
mask decoder. Data: a DAVIS 2017 folder when ``davis_root`` is given, else generated synthetic videos.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field

from evaluators.vos.davis import DavisDataset, VideoSequence
from evaluators.vos.synthetic import SyntheticConfig, cached_synthetic_davis
from hilnas.settings import get_settings
from latency_models.backends import get_backend
from latency_models.protocol import ProtocolConfig
from search.families.edgetam.latency import measure_components, measurement_rows
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


class EdgeTAMOptions(FamilyOptions):
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
    latency_backend: str = Field("executorch-xnnpack", description="a latency_models backend name")
    latency_threads: int = Field(1, ge=1)
    latency_time_cap_s: float = Field(3.0, gt=0, description="timed seconds per component before giving up")
    latency_ci_half_width: float = Field(0.03, gt=0, description="relative precision the median must reach")
    cache_dir: str | None = Field(None, description="where generated videos and the teacher are kept")


class EdgeTAMFamily(Family):
    name = "edgetam"
    description = "SAM 2-style video object segmentation with dense, pooled or 2D-perceiver memory"
    Options = EdgeTAMOptions
    needs_device = True

    options: EdgeTAMOptions

    def __init__(self, options: EdgeTAMOptions | None = None) -> None:
        super().__init__(options)
        self._videos: dict[str, list[VideoSequence]] = {}
        self._teacher: EdgeTAM | None = None

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
        if split not in self._videos:
            self._videos[split] = self._dataset().load_split(split)
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

    def teacher(self) -> EdgeTAM:
        """The trained teacher, loaded from the cache or trained once and cached (written atomically)."""
        if self._teacher is not None:
            return self._teacher
        config = self.teacher_config()
        recipe = {
            "architecture": asdict(config),
            "data": self._data_identity(),
            "budget": asdict(self._budget(self.options.teacher_steps, seed=0)),
        }
        key = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]
        path = self._cache_dir() / f"teacher-{key}.pt"
        model = EdgeTAM(config)
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
        torch.set_num_threads(1)  # one Ray CPU per trial
        config = self.config(params)
        model, inherited, total = self.distilled_candidate(config, context.seed)
        result = evaluate_jf(model, self.held_out_videos())
        metrics = result.as_metrics() | {
            "params": float(model.parameter_count()),
            "memory_tokens": float((config.memory_frames + 1) * config.tokens_per_frame()),
        }
        return Evaluation(metrics=metrics, info={"inherited_tensors": inherited, "tensors": total})

    # ----------------------------------------------------------------- latency

    def measure(self, params: dict[str, Any], device: str, context: TrialContext) -> Evaluation:
        """Per-component latency at the candidate's full bank (weights do not change the time: fresh ones)."""
        config = self.config(params)
        torch.manual_seed(0)
        backend = get_backend(self.options.latency_backend)
        protocol = ProtocolConfig(
            threads=self.options.latency_threads,
            time_cap_s=self.options.latency_time_cap_s,
            ci_half_width=self.options.latency_ci_half_width,
        )
        workdir = Path(context.artifact_dir) / f"trial-{context.trial_number}" / "edgetam-latency"
        results = measure_components(EdgeTAM(config), backend, protocol, workdir)
        shape = {"memory_frames": config.memory_frames, "resolution": config.resolution, "objects": 1}
        rows = measurement_rows(
            results, self.arch_hash(params), _architecture(config), shape, device, backend, protocol
        )
        unstable = [name for name, result in results.items() if not result.timing.stable]
        if unstable:
            raise UnstableMeasurement(f"unstable latency of {', '.join(unstable)} on {device}; retry on a quiet device")
        metrics = {f"{name}_ms": result.timing.median_ms for name, result in results.items()}
        return Evaluation(metrics=metrics, measurements=rows)


def _architecture(config: EdgeTAMConfig) -> dict[str, Any]:
    """The config without the perceiver's settings when they do not apply (so equal models hash equal)."""
    architecture = config.as_dict()
    if config.memory != "perceiver":
        for name in PERCEIVER_ONLY:
            architecture.pop(name)
    return architecture
