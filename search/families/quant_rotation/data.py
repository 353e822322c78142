"""Calibration and held-out windows cut from token streams in the model's own vocabulary.

Calibration windows start at seeded random offsets of the train stream. Held-out windows are the
backbone's own choice (``backbone.heldout_windows``: no token predicted twice, spread over the whole
validation stream), so every run scores the same text, and the same text the backbone's held-out
loss is measured on. A window of ``seq_len`` predictions holds ``seq_len + 1`` tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from hilnas.errors import UserError
from search.families.mobilellm_flash.backbone import heldout_windows


@dataclass(frozen=True)
class TokenStreams:
    """The train and validation splits of a corpus, each one token stream (documents separated)."""

    train: np.ndarray
    validation: np.ndarray


def calibration_set(stream: np.ndarray, count: int, seq_len: int, seed: int = 0) -> Tensor:
    """``count`` distinct windows of ``seq_len + 1`` tokens from ``stream``, (count, seq_len + 1) int64."""
    _require(len(stream) - seq_len, count, seq_len, "calibration")
    starts = np.random.default_rng(seed).choice(len(stream) - seq_len, size=count, replace=False)
    return torch.from_numpy(np.stack([stream[s : s + seq_len + 1] for s in starts]).astype(np.int64))


def heldout_set(stream: np.ndarray, count: int, seq_len: int) -> Tensor:
    """``count`` windows of ``stream``, picked as the backbone picks its held-out windows; (count, seq_len + 1)."""
    _require((len(stream) - 1) // seq_len, count, seq_len, "held-out")
    return heldout_windows(stream, seq_len, count * seq_len)


def _require(available: int, count: int, seq_len: int, what: str) -> None:
    if count < 1 or seq_len < 1:
        raise UserError(f"The {what} set needs at least one window of two or more tokens.")
    if available < count:
        raise UserError(
            f"The corpus holds fewer {what} windows than requested ({max(available, 0)} < {count} of "
            f"{seq_len + 1} tokens)."
        )
