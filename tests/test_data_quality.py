"""Data-quality indicators: diversity measures order texts as expected; a teacher's samples read as synthetic."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from evaluators.corpus import CorpusConfig, build_stdlib_corpus
from evaluators.data_quality import compression_ratio, distinct_ngram_ratio, measure_quality, teacher_nll
from hilnas.errors import UserError
from search.scaling.teacher import sample_text
from search.scaling.training import ModelSize, TrainSettings, train_with_cooldowns

SMALL = CorpusConfig(modules=("json/*.py", "textwrap.py", "argparse.py"), validation_fraction=0.2)


def test_compression_ratio_orders_redundant_below_random() -> None:
    redundant = b"the same sentence again. " * 200
    noise = np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes()
    for codec in ("zlib", "gzip"):
        assert compression_ratio(redundant, codec) < 0.05 < 0.9 < compression_ratio(noise, codec)
    with pytest.raises(UserError, match="Unknown compression codec"):
        compression_ratio(noise, "lzma")
    with pytest.raises(UserError, match="empty"):
        compression_ratio(b"")


def test_distinct_ngram_ratio_counts_repeats() -> None:
    assert distinct_ngram_ratio(["a", "b", "a", "b"], 2) == pytest.approx(2 / 3)
    assert distinct_ngram_ratio(list("abcd"), 1) == 1.0
    with pytest.raises(UserError, match="at least 3 tokens"):
        distinct_ngram_ratio(["a", "b"], 3)


def test_measure_quality_sees_repetition_and_states_its_cost(tmp_path) -> None:  # noqa: ANN001
    natural = build_stdlib_corpus(SMALL, cache_dir=tmp_path).as_bytes()
    repeated = np.tile(natural[:2048], 20)
    report_natural = measure_quality(natural, n_windows=16, window=1024)
    report_repeated = measure_quality(repeated, n_windows=16, window=1024)
    assert report_repeated.indicators["distinct_2"] < 0.5 * report_natural.indicators["distinct_2"]
    assert report_natural.indicators["diversity"] == report_natural.indicators["compression_zlib"]
    assert report_natural.cost["sample_bytes"] == 16 * 1024 and report_natural.cost["diversity_seconds"] > 0
    assert "teacher_nll" not in report_natural.indicators


def test_teacher_samples_score_as_synthetic(tmp_path) -> None:  # noqa: ANN001
    torch.set_num_threads(1)
    corpus = build_stdlib_corpus(SMALL, cache_dir=tmp_path)
    settings = TrainSettings(seq_len=32, batch_size=8, warmup_steps=5)
    _, teacher = train_with_cooldowns(
        ModelSize(dim=16, layers=1), corpus.as_bytes(), corpus.as_bytes("validation"), [8192], settings
    )
    teacher.eval()
    natural = corpus.as_bytes()
    synthetic = sample_text(teacher, natural, 8192, temperature=0.5, batch_size=64)
    assert synthetic.dtype == np.uint8 and len(synthetic) == 8192
    options = {"teacher": teacher, "teacher_context": 32, "n_windows": 8, "window": 1024}
    reference = measure_quality(natural, **options).indicators["teacher_nll"]
    natural_report = measure_quality(natural, reference_nll=reference, **options)
    synthetic_report = measure_quality(synthetic, reference_nll=reference, **options)
    assert natural_report.indicators["syntheticity"] == 0.0
    assert synthetic_report.indicators["syntheticity"] > 0.3
    assert synthetic_report.indicators["teacher_perplexity"] == pytest.approx(
        np.exp(synthetic_report.indicators["teacher_nll"])
    )
    assert synthetic_report.cost["teacher_tokens"] == 8 * (1024 // 33) * 32
    # The NLL is the mean next-byte cross-entropy: a uniform-logit model scores exactly log(256).
    uniform = torch.nn.Sequential(torch.nn.Embedding(256, 256))
    torch.nn.init.zeros_(uniform[0].weight)
    assert teacher_nll(uniform, [natural[:33], natural[33:66]]) == pytest.approx(np.log(256))
