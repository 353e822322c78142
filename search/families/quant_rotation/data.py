"""Byte-level token sequences from the standard-library corpus (``evaluators.corpus``).

Calibration windows are drawn at seeded random offsets from the train split; held-out windows
are consecutive, non-overlapping windows of the validation split, so every run scores the same text.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from evaluators.corpus import Corpus, build_stdlib_corpus
from hilnas.errors import UserError

BYTE_VOCAB = 256


def calibration_sequences(count: int, length: int, seed: int = 0, corpus: Corpus | None = None) -> Tensor:
    """``count`` windows of ``length`` tokens from the train split, (count, length) int64."""
    data = (corpus or build_stdlib_corpus()).as_bytes("train")
    _require(len(data) - length, count, length, "calibration")
    starts = np.random.default_rng(seed).choice(len(data) - length, size=count, replace=False)
    return torch.from_numpy(np.stack([data[s : s + length] for s in starts]).astype(np.int64))


def heldout_sequences(count: int, length: int, corpus: Corpus | None = None) -> Tensor:
    """The first ``count`` non-overlapping windows of the validation split, (count, length) int64."""
    data = (corpus or build_stdlib_corpus()).as_bytes("validation")
    _require(len(data) // length, count, length, "held-out")
    return torch.from_numpy(data[: count * length].astype(np.int64).reshape(count, length))


def _require(available: int, count: int, length: int, what: str) -> None:
    if count < 1 or length < 2:
        raise UserError(f"The {what} set needs at least one sequence of two or more tokens.")
    if available < count:
        raise UserError(
            f"The corpus holds fewer {what} windows than requested ({max(available, 0)} < {count} of {length} tokens)."
        )
