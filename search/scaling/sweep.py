"""``hilnas scaling sweep``: build the datasets, measure their quality, train the grid as Ray tasks, store losses.

The driver process builds every dataset first (natural corpus, teacher samples, repeated subset,
mixtures), measures and stores its indicators, then trains each (size, dataset, seed) run as one Ray
task and writes a run's loss points in one transaction as soon as it finishes. Like the search
driver, it is the only writer of the store.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import ray
import torch
from sqlalchemy import select

from db.models import ScalingDataset, ScalingPoint, ScalingRun, ScalingSweep
from db.session import session_scope
from evaluators.corpus import Corpus, build_stdlib_corpus
from evaluators.data_quality import measure_quality
from hilnas.errors import UserError
from search.executor import connect_ray, describe_exception
from search.scaling.spec import DatasetSpec, SweepSpec
from search.scaling.teacher import load_or_train_teacher, sample_text
from search.scaling.training import ModelSize, TrainSettings, n_params, train_with_cooldowns


@dataclass(frozen=True)
class BuiltDataset:
    spec: DatasetSpec
    stream: np.ndarray  # uint8 bytes the runs sample windows from
    dataset_id: int


SUBSET_CHUNK = 4096


def natural_subset(natural: np.ndarray, n_bytes: int, seed: int = 0) -> np.ndarray:
    """``n_bytes`` of natural text from randomly chosen 4 KiB chunks (in corpus order).

    A prefix of the corpus would be a few stdlib modules only, whose style differs from the whole
    (measurably: the teacher scores them worse), so subsets are spread over the corpus.
    """
    n_chunks = len(natural) // SUBSET_CHUNK
    wanted = min(n_chunks, -(-n_bytes // SUBSET_CHUNK))
    chosen = np.sort(np.random.default_rng(seed).choice(n_chunks, size=wanted, replace=False))
    return np.concatenate([natural[c * SUBSET_CHUNK : (c + 1) * SUBSET_CHUNK] for c in chosen])[:n_bytes]


def _dataset_stream(spec: DatasetSpec, natural: np.ndarray, synthetic: np.ndarray | None) -> np.ndarray:
    if spec.kind == "natural":
        return natural
    if spec.kind == "synthetic":
        return synthetic
    if spec.kind == "repeated":
        return natural_subset(natural, spec.unique_tokens)
    share = spec.synthetic_fraction
    return np.concatenate([synthetic, natural_subset(natural, int(len(synthetic) * (1.0 - share) / share))])


def build_datasets(
    spec: SweepSpec, corpus: Corpus, db_url: str | None, say: Callable[[str], None]
) -> list[BuiltDataset]:
    """Every dataset of the spec, its indicators measured once and stored (reused when the same bytes exist)."""
    settings = spec.training
    natural = corpus.as_bytes("train")
    say(f"corpus: {len(natural):,} train bytes from {corpus.stats.get('files')} stdlib files; training the teacher")
    teacher = load_or_train_teacher(spec.teacher, settings, corpus)
    synthetic = None
    if any(d.kind in ("synthetic", "mixture") for d in spec.datasets):
        n_bytes = spec.synthetic_tokens or spec.token_budget
        say(f"sampling {n_bytes:,} bytes from the teacher (temperature {spec.teacher.temperature})")
        synthetic = sample_text(
            teacher,
            natural,
            n_bytes,
            prompt_bytes=spec.teacher.prompt_bytes,
            temperature=spec.teacher.temperature,
            seed=spec.teacher.seed,
        )
    quality = {"teacher_context": settings.seq_len, "n_windows": spec.quality_windows, "window": 1024}
    reference = measure_quality(natural, teacher=teacher, **quality).indicators["teacher_nll"]
    built = []
    measured_by = json.dumps([spec.teacher.model_dump(), settings.model_dump(), quality], sort_keys=True)
    for dataset in spec.datasets:
        stream = _dataset_stream(dataset, natural, synthetic)
        # Same bytes measured by the same teacher and sample: the stored indicators are reused.
        digest = hashlib.sha256(stream.tobytes() + measured_by.encode()).hexdigest()[:12]
        name = f"{dataset.name}-{digest}"
        with session_scope(db_url) as session:
            row = session.scalar(select(ScalingDataset).where(ScalingDataset.name == name))
            if row is None:
                report = measure_quality(stream, teacher=teacher, reference_nll=reference, **quality)
                row = ScalingDataset(
                    name=name,
                    kind=dataset.kind,
                    recipe={
                        "dataset": dataset.model_dump(),
                        "teacher": spec.teacher.model_dump(),
                        "corpus": corpus.config.key(),
                    },
                    n_tokens=len(stream),
                    unique_tokens=len(stream),
                    indicators=report.indicators,
                    indicator_cost=report.cost,
                )
                session.add(row)
                session.flush()
            built.append(BuiltDataset(dataset, stream, row.id))
            say(f"dataset {name}: " + ", ".join(f"{k}={v:.3f}" for k, v in row.indicators.items() if k in _SHOWN))
    return built


_SHOWN = ("diversity", "distinct_2", "teacher_nll", "syntheticity")


@ray.remote(max_retries=0)
def train_run(
    size: ModelSize,
    stream: np.ndarray,
    validation: np.ndarray,
    checkpoints: list[int],
    settings: TrainSettings,
    seed: int,
) -> dict:
    """One run of the grid (a Ray task): loss points and where it ran."""
    started = time.perf_counter()
    points, _ = train_with_cooldowns(size, stream, validation, checkpoints, settings, seed)
    return {
        "points": [(p.tokens, p.loss, p.train_loss) for p in points],
        "node": f"{socket.gethostname()}:{os.getpid()}",
        "seconds": time.perf_counter() - started,
    }


def _create_sweep(spec: SweepSpec, db_url: str | None, built: list[BuiltDataset]) -> tuple[int, dict[str, int]]:
    with session_scope(db_url) as session:
        sweep = ScalingSweep(name=spec.name, spec=spec.model_dump(mode="json"), status="running")
        session.add(sweep)
        session.flush()
        run_ids = {}
        for size in spec.sizes:
            for data in built:
                for seed in range(spec.seeds):
                    key = f"dim={size.dim},layers={size.layers},data={data.spec.name},seed={seed}"
                    run = ScalingRun(
                        sweep_id=sweep.id,
                        dataset_id=data.dataset_id,
                        key=key,
                        n_params=n_params(size, spec.training.seq_len),
                        model=size.model_dump(),
                        lr=spec.training.lr_for(size),
                        token_budget=spec.token_budget,
                        seed=seed,
                    )
                    session.add(run)
                    session.flush()
                    run_ids[key] = run.id
        return sweep.id, run_ids


def _record_run(db_url: str | None, run_id: int, result: dict | None, error: str | None) -> None:
    with session_scope(db_url) as session:
        run = session.get(ScalingRun, run_id)
        run.finished_at = datetime.now(UTC)
        if result is None:
            run.status, run.error = "failed", error
            return
        run.status, run.node, run.duration_s = "complete", result["node"], result["seconds"]
        session.add_all(
            ScalingPoint(run_id=run_id, tokens=t, loss=loss, train_loss=tl) for t, loss, tl in result["points"]
        )


def run_sweep(
    spec: SweepSpec,
    db_url: str | None = None,
    address: str | None = None,
    say: Callable[[str], None] = print,
    on_run_done: Callable[[int, int], None] | None = None,
) -> int:
    """Train the whole grid; returns the sweep id. Failed runs are stored with their error, not retried."""
    torch.set_num_threads(spec.training.threads)  # the driver's own teacher work shares the CPUs with Ray tasks
    corpus = build_stdlib_corpus(spec.corpus)
    if len(corpus.as_bytes("validation")) <= spec.training.seq_len + 1:
        raise UserError(
            f"The corpus's validation split has only {len(corpus.as_bytes('validation'))} bytes; "
            "widen corpus.modules or raise corpus.validation_fraction."
        )
    built = build_datasets(spec, corpus, db_url, say)
    sweep_id, run_ids = _create_sweep(spec, db_url, built)
    connect_ray(address, [])
    validation = ray.put(corpus.as_bytes("validation"))
    streams = {b.spec.name: ray.put(b.stream) for b in built}
    checkpoints = spec.checkpoint_tokens()
    pending = {}
    for size in spec.sizes:
        for data in built:
            for seed in range(spec.seeds):
                key = f"dim={size.dim},layers={size.layers},data={data.spec.name},seed={seed}"
                ref = train_run.options(num_cpus=spec.cpus_per_run).remote(
                    size, streams[data.spec.name], validation, checkpoints, spec.training, seed
                )
                pending[ref] = run_ids[key]
    done, total, failed = 0, len(pending), 0
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1)
        run_id = pending.pop(ready[0])
        try:
            _record_run(db_url, run_id, ray.get(ready[0]), None)
        except (ray.exceptions.RayError, RuntimeError, ValueError) as exc:
            failed += 1
            _record_run(db_url, run_id, None, describe_exception(exc))
        done += 1
        if on_run_done is not None:
            on_run_done(done, total)
    with session_scope(db_url) as session:
        sweep = session.get(ScalingSweep, sweep_id)
        sweep.status = "finished" if failed == 0 else "finished-with-failures"
        sweep.finished_at = datetime.now(UTC)
    return sweep_id
