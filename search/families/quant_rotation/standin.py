"""A STAND-IN backbone: a small byte-level MobileLLM trained for a few CPU minutes and cached.

It exists only until the MobileLLM-Flash backbone of issue 4 does; the benchmark quantizes it
because quantization effects need a trained model (random weights have no activation outliers).
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
import torch.nn.functional as F
from rich.progress import Progress

from hilnas.settings import get_settings
from search.families.mobilellm_flash.model import MobileLLM
from search.families.mobilellm_flash.space import ArchConfig, LayerConfig
from search.families.quant_rotation.checkpoint import load_model, save_model
from search.families.quant_rotation.data import BYTE_VOCAB, calibration_sequences

STANDIN_CONFIG = ArchConfig(
    vocab_size=BYTE_VOCAB,
    dim=128,
    head_dim=32,
    layers=[LayerConfig(n_heads=4, n_kv_heads=2, ffn_dim=384) for _ in range(4)],
    max_context=256,
)


def standin_path() -> Path:
    return Path(get_settings().cache_dir) / "quant_rotation" / f"standin-{STANDIN_CONFIG.arch_hash()[:12]}.pt"


def train_standin(seconds: float = 180.0, seq_len: int = 128, batch_size: int = 16, seed: int = 0) -> MobileLLM:
    """Train for ``seconds`` of wall time (AdamW at a constant LR: it is a stand-in, not a result).

    One thread: on a shared machine a second thread mostly waits for the other processes.
    """
    torch.set_num_threads(1)
    torch.manual_seed(seed)
    model = MobileLLM(STANDIN_CONFIG)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    data = calibration_sequences(20_000, seq_len + 1, seed=seed)
    started, step = time.perf_counter(), 0
    with Progress() as progress:
        task = progress.add_task("training the stand-in backbone", total=seconds)
        while (elapsed := time.perf_counter() - started) < seconds:
            batch = data[torch.randint(0, len(data), (batch_size,))]
            logits = model(batch[:, :-1])
            loss = F.cross_entropy(logits.reshape(-1, BYTE_VOCAB), batch[:, 1:].reshape(-1))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            step += 1
            progress.update(task, completed=elapsed, description=f"stand-in step {step} loss {loss.item():.3f}")
    return model.eval()


def standin_backbone(train_seconds: float = 180.0) -> MobileLLM:
    """The cached stand-in, trained and cached on first use."""
    path = standin_path()
    if path.is_file():
        return load_model(path)
    model = train_standin(train_seconds)
    save_model(model, path)
    return model
