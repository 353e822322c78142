"""Data-quality indicators of a training text: diversity and syntheticity, measured on a sample.

- Diversity: the compression ratio (compressed / raw bytes, zlib and gzip at level 9, each window
  compressed on its own) and the distinct word n-gram ratio (distinct-n of Li et al., 2016). Repetitive
  text compresses well and reuses its n-grams, so lower values mean less diverse text. ``diversity``
  is the zlib ratio.
- Syntheticity: the per-token negative log-likelihood (nats, and its perplexity) of the text under a
  teacher language model. Text sampled from the teacher scores a lower NLL than natural text, so
  ``syntheticity`` = NLL(natural reference) - NLL(text): 0 for the reference, positive for text the
  teacher finds typical. The gap is the difference of the two texts' KL divergences to the teacher
  plus their entropy difference; without the texts' true entropies that is as close to a KL as a
  sample gets.

Everything is computed on ``n_windows`` random windows of ``window`` bytes, never the whole dataset;
``cost`` states the sample size and the seconds each part took.
"""

from __future__ import annotations

import gzip
import time
import zlib
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np

from hilnas.errors import UserError


def compression_ratio(data: bytes, codec: str = "zlib") -> float:
    """Compressed size over raw size at the codec's highest level (lower: more redundant)."""
    if not data:
        raise UserError("Cannot measure the compression ratio of empty text.")
    if codec == "zlib":
        compressed = zlib.compress(data, 9)
    elif codec == "gzip":
        compressed = gzip.compress(data, compresslevel=9, mtime=0)
    else:
        raise UserError(f"Unknown compression codec {codec!r}; use zlib or gzip.")
    return len(compressed) / len(data)


def distinct_ngram_ratio(tokens: Sequence[Hashable], n: int = 2) -> float:
    """Distinct n-grams over all n-grams of ``tokens`` (1.0: no n-gram repeats)."""
    total = len(tokens) - n + 1
    if total <= 0:
        raise UserError(f"Need at least {n} tokens to count {n}-grams.")
    return len({tuple(tokens[i : i + n]) for i in range(total)}) / total


def sample_windows(stream: np.ndarray, n_windows: int, window: int, seed: int = 0) -> list[np.ndarray]:
    """``n_windows`` random contiguous windows of ``window`` items (fewer, shorter ones for a short stream)."""
    if len(stream) <= window:
        return [stream]
    starts = np.random.default_rng(seed).integers(0, len(stream) - window, size=n_windows)
    return [stream[s : s + window] for s in np.sort(starts)]


def teacher_nll(model, windows: list[np.ndarray], batch_size: int = 32) -> float:  # noqa: ANN001 - any byte LM
    """Mean next-byte NLL (nats) under ``model`` (a module mapping (B, T) byte ids to (B, T, 256) logits)."""
    import torch
    import torch.nn.functional as F

    total, count = 0.0, 0
    model.eval()
    with torch.no_grad():
        for i in range(0, len(windows), batch_size):
            batch = torch.as_tensor(np.stack(windows[i : i + batch_size]).astype(np.int64))
            logits = model(batch[:, :-1])
            nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1), reduction="sum")
            total += float(nll)
            count += batch[:, 1:].numel()
    return total / count


@dataclass(frozen=True)
class QualityReport:
    """Indicators of one dataset and what measuring them cost."""

    indicators: dict[str, float]
    cost: dict[str, float]


def measure_quality(
    stream: np.ndarray,
    *,
    teacher=None,  # noqa: ANN001 - a byte LM, see teacher_nll
    teacher_context: int = 64,
    reference_nll: float | None = None,
    n_windows: int = 64,
    window: int = 1024,
    seed: int = 0,
) -> QualityReport:
    """Diversity on ``n_windows`` byte windows; with a teacher, its NLL (and syntheticity given a reference).

    ``teacher_context`` is how many bytes the teacher reads at once (its context length).
    """
    windows = sample_windows(stream, n_windows, window, seed)
    started = time.perf_counter()
    raw = sum(len(w) for w in windows)
    indicators = {
        f"compression_{codec}": sum(compression_ratio(w.tobytes(), codec) * len(w) for w in windows) / raw
        for codec in ("zlib", "gzip")
    }
    words = [w for win in windows for w in win.tobytes().decode("utf-8", errors="replace").split()]
    for n in (1, 2, 3):
        indicators[f"distinct_{n}"] = distinct_ngram_ratio(words, n)
    indicators["diversity"] = indicators["compression_zlib"]
    cost = {
        "sample_bytes": float(raw),
        "windows": float(len(windows)),
        "diversity_seconds": time.perf_counter() - started,
    }
    if teacher is not None:
        started = time.perf_counter()
        span = teacher_context + 1  # the teacher reads teacher_context bytes and predicts each next one
        chunks = [w[i : i + span] for w in windows for i in range(0, len(w) - span + 1, span)]
        nll = teacher_nll(teacher, chunks)
        indicators["teacher_nll"] = nll
        indicators["teacher_perplexity"] = float(np.exp(nll))
        if reference_nll is not None:
            indicators["syntheticity"] = reference_nll - nll
        cost["teacher_tokens"] = float(sum(len(c) - 1 for c in chunks))
        cost["teacher_seconds"] = time.perf_counter() - started
    return QualityReport(indicators, cost)
