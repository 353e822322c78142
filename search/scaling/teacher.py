"""The teacher: a byte-level LM trained once on the natural corpus, cached, then sampled for synthetic text.

Synthetic data for the sweeps is text sampled from this teacher (temperature below 1, from short
natural prompts), and its NLL on a dataset measures that dataset's syntheticity (``evaluators.data_quality``).
The trained weights are cached under ``<cache_dir>/teachers`` keyed by the corpus and the settings.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from evaluators.corpus import Corpus
from hilnas.settings import get_settings
from search.families.mobilellm_flash.model import MobileLLM
from search.scaling.training import ModelSize, TrainSettings, arch_config, train_with_cooldowns


class TeacherSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    size: ModelSize = ModelSize(dim=64, layers=2)
    tokens: int = Field(1_000_000, ge=1024, description="training tokens")
    seed: int = 0
    prompt_bytes: int = Field(4, ge=1, description="natural bytes each sample starts from (not kept)")
    #: Below 1 like most synthetic-data pipelines; at 1 a calibrated teacher's samples score about the
    #: same NLL as natural text and syntheticity would not show.
    temperature: float = Field(0.7, gt=0.0)


def _cache_path(spec: TeacherSpec, settings: TrainSettings, corpus: Corpus) -> Path:
    payload = json.dumps([spec.model_dump(), settings.model_dump(), corpus.config.key()], sort_keys=True)
    key = hashlib.sha256(payload.encode()).hexdigest()[:16]
    return Path(get_settings().cache_dir) / "teachers" / f"teacher-{key}.pt"


def load_or_train_teacher(spec: TeacherSpec, settings: TrainSettings, corpus: Corpus) -> MobileLLM:
    """The cached teacher for these settings, trained on the corpus's train split when absent."""
    path = _cache_path(spec, settings, corpus)
    config = arch_config(spec.size, settings.seq_len)
    if path.is_file():
        model = MobileLLM(config)
        model.load_state_dict(torch.load(path, weights_only=True))
    else:
        _, model = train_with_cooldowns(
            spec.size, corpus.as_bytes("train"), corpus.as_bytes("validation"), [spec.tokens], settings, spec.seed
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".{os.getpid()}.partial")
        torch.save(model.state_dict(), partial)
        partial.replace(path)
    return model.eval()


@torch.no_grad()
def sample_text(
    teacher: MobileLLM,
    prompts_from: np.ndarray,
    n_bytes: int,
    *,
    prompt_bytes: int = 4,
    temperature: float = 0.7,
    batch_size: int = 512,
    seed: int = 0,
) -> np.ndarray:
    """About ``n_bytes`` of teacher samples (uint8), each sequence continuing a random natural prompt."""
    generator = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    length = teacher.config.max_context - prompt_bytes
    pieces, produced = [], 0
    while produced < n_bytes:
        starts = rng.integers(0, len(prompts_from) - prompt_bytes, size=batch_size)
        prompt = torch.from_numpy(np.stack([prompts_from[s : s + prompt_bytes] for s in starts]).astype(np.int64))
        logits, cache = teacher.prefill(prompt)
        generated = []
        for step in range(length):
            token = torch.multinomial(torch.softmax(logits / temperature, dim=-1), 1, generator=generator)
            generated.append(token)
            if step + 1 < length:
                logits, new_kv = teacher.decode(token, torch.tensor([prompt_bytes + step]), cache)
                cache = teacher.append_to_cache(cache, new_kv)
        block = torch.cat(generated, dim=1).numpy().astype(np.uint8)
        pieces.append(block.reshape(-1))
        produced += block.size
    return np.concatenate(pieces)[:n_bytes]
