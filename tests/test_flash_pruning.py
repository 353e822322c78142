"""Pruned MobileLLM-Flash candidates: activation-based importance, inherited weights, distillation, quality."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from evaluators.lm_quality import candidate_quality, multiple_choice_accuracy
from hilnas.errors import UserError
from search.families.mobilellm_flash.distill import distill, heldout_loss
from search.families.mobilellm_flash.importance import Importance, compute_importance
from search.families.mobilellm_flash.model import MobileLLM
from search.families.mobilellm_flash.pruning import check_subarchitecture, prune
from search.families.mobilellm_flash.space import ArchConfig, LayerConfig
from search.family import InvalidCandidate

torch.set_num_threads(1)

VOCAB = 32


def markov_text(length: int, seed: int) -> np.ndarray:
    """Tokens that usually count up by one (mod VOCAB) and jump at random 10% of the time."""
    rng = np.random.default_rng(seed)
    tokens = np.empty(length, dtype=np.int64)
    tokens[0] = 0
    jumps, targets = rng.random(length) < 0.1, rng.integers(0, VOCAB, length)
    for i in range(1, length):
        tokens[i] = targets[i] if jumps[i] else (tokens[i - 1] + 1) % VOCAB
    return tokens


def arch(dim: int = 32, layers: list[LayerConfig] | None = None, **overrides: object) -> ArchConfig:
    layers = layers or [LayerConfig(n_heads=4, n_kv_heads=2, ffn_dim=64) for _ in range(4)]
    fields = {"vocab_size": VOCAB, "dim": dim, "head_dim": 8, "layers": layers, "window": 8, "max_context": 128}
    return ArchConfig(**(fields | overrides))


@pytest.fixture(scope="module")
def text() -> tuple[np.ndarray, np.ndarray]:
    return markov_text(60_000, seed=1), markov_text(10_000, seed=2)


@pytest.fixture(scope="module")
def backbone(text: tuple[np.ndarray, np.ndarray]) -> MobileLLM:
    """A tiny backbone trained with plain cross-entropy until it has learnt the counting pattern."""
    torch.manual_seed(0)
    model = MobileLLM(arch())
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    rng = np.random.default_rng(0)
    for _ in range(80):
        starts = rng.integers(0, len(text[0]) - 65, 16)
        batch = torch.from_numpy(np.stack([text[0][s : s + 65] for s in starts]))
        loss = F.cross_entropy(model(batch[:, :-1]).reshape(-1, VOCAB), batch[:, 1:].reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


@pytest.fixture(scope="module")
def importance(backbone: MobileLLM, text: tuple[np.ndarray, np.ndarray]) -> Importance:
    return compute_importance(backbone, calibration(text[0]))


def calibration(tokens: np.ndarray, windows: int = 16, length: int = 64) -> torch.Tensor:
    return torch.from_numpy(tokens[: windows * length].reshape(windows, length))


def small_target() -> ArchConfig:
    layers = [
        LayerConfig(attention="full", n_heads=2, n_kv_heads=1, ffn_dim=40),
        LayerConfig(attention="local", n_heads=4, n_kv_heads=2, ffn_dim=48),
        LayerConfig(attention="skip", ffn_dim=32),
    ]
    return arch(dim=24, layers=layers)


def test_full_target_reproduces_the_backbone_exactly(backbone: MobileLLM, importance: Importance) -> None:
    tokens = torch.randint(0, VOCAB, (2, 40))
    same = prune(backbone, importance, backbone.config)
    with torch.no_grad():
        assert torch.equal(same(tokens), backbone(tokens))


def test_pruned_weights_are_slices_of_the_backbone(backbone: MobileLLM, importance: Importance) -> None:
    pruned = prune(backbone, importance, small_target())
    hidden = importance.hidden.topk(24).indices.sort().values
    kept_layers = importance.blocks.topk(3).indices.sort().values.tolist()
    assert torch.equal(pruned.tok_embeddings.weight, backbone.tok_embeddings.weight[:, hidden])
    assert pruned.output.weight is pruned.tok_embeddings.weight  # still tied

    def rows_are_backbone_rows(small: torch.Tensor, big: torch.Tensor) -> bool:
        return all(any(torch.equal(row, candidate) for candidate in big) for row in small)

    for block, j in zip(pruned.blocks, kept_layers, strict=True):
        source = backbone.blocks[j]
        assert rows_are_backbone_rows(block.ffn.gate_proj.weight, source.ffn.gate_proj.weight[:, hidden])
        assert torch.allclose(block.ffn_norm.weight, source.ffn_norm.weight[hidden] * math.sqrt(32 / 24))
    first, source = pruned.blocks[0].attn, backbone.blocks[kept_layers[0]].attn
    assert rows_are_backbone_rows(first.q_proj.weight, source.q_proj.weight[:, hidden])
    assert rows_are_backbone_rows(first.k_proj.weight, source.k_proj.weight[:, hidden])
    # The one kept KV group is the more important one, and its two query heads are the group's best two of two.
    group = int(importance.kv_groups[kept_layers[0]].argmax())
    assert torch.equal(first.k_proj.weight, source.k_proj.weight[group * 8 : (group + 1) * 8][:, hidden])
    assert torch.equal(first.q_proj.weight, source.q_proj.weight[group * 16 : (group + 1) * 16][:, hidden])
    assert not pruned.blocks[2].has_attention
    with torch.no_grad():
        assert torch.isfinite(pruned(torch.randint(0, VOCAB, (1, 20)))).all()


def test_layers_kept_follow_block_importance(backbone: MobileLLM, importance: Importance) -> None:
    ranked = copy.deepcopy(importance)
    ranked.blocks = torch.tensor([0.5, 0.1, 0.9, 0.3])
    target = arch(layers=list(backbone.config.layers[:2]))
    pruned = prune(backbone, ranked, target)
    for block, j in zip(pruned.blocks, [0, 2], strict=True):  # the two highest scores, in backbone order
        assert torch.equal(block.ffn.down_proj.weight, backbone.blocks[j].ffn.down_proj.weight)
        assert torch.equal(block.attn.o_proj.weight, backbone.blocks[j].attn.o_proj.weight)


def test_importance_comes_from_activations(backbone: MobileLLM, text: tuple[np.ndarray, np.ndarray]) -> None:
    """Parts silenced in the weights score (near) zero, so the scores follow what the network computes."""
    model = copy.deepcopy(backbone)
    with torch.no_grad():
        model.blocks[2].attn.o_proj.weight.zero_()  # block 2 becomes the identity
        model.blocks[2].ffn.down_proj.weight.zero_()
        model.blocks[1].attn.o_proj.weight[:, 8:16].zero_()  # head 1 of layer 1 writes nothing
        model.blocks[0].ffn.gate_proj.weight[5].zero_()  # FFN channel 5 of layer 0 is always 0
        model.tok_embeddings.weight[:, 7].zero_()  # residual channel 7 stays 0 everywhere
        for block in model.blocks:
            block.attn.o_proj.weight[7].zero_()
            block.ffn.down_proj.weight[7].zero_()
    scores = compute_importance(model, calibration(text[0]))
    assert int(scores.blocks.argmin()) == 2 and scores.blocks[2] < 1e-6 < scores.blocks.sort().values[1]
    assert int(scores.heads[1].argmin()) == 1 and scores.heads[1][1] == 0
    assert int(scores.ffn[0].argmin()) == 5 and scores.ffn[0][5] == 0
    assert int(scores.hidden.argmin()) == 7 and scores.hidden[7] == 0
    assert scores.calibration_tokens == 16 * 64
    restored = Importance.from_dict(json.loads(json.dumps(scores.to_dict())))
    assert torch.equal(restored.ffn[3], scores.ffn[3]) and torch.equal(restored.blocks, scores.blocks)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"dim": 40}, "dim 40 is wider than the backbone's 32"),
        ({"vocab_size": 64}, "vocab_size is 64"),
        ({"head_dim": 4}, "head_dim is 4"),
        ({"layers": [LayerConfig(n_heads=4, n_kv_heads=2, ffn_dim=64)] * 5}, "5 layers is more than the backbone's 4"),
        ({"layers": [LayerConfig(n_heads=8, n_kv_heads=4, ffn_dim=64)]}, "4 KV heads is more than 2"),
        ({"layers": [LayerConfig(n_heads=6, n_kv_heads=2, ffn_dim=64)]}, "3 query heads per KV head is more than 2"),
        ({"layers": [LayerConfig(n_heads=4, n_kv_heads=2, ffn_dim=65)]}, "ffn_dim 65 is wider than 64"),
    ],
)
def test_targets_that_are_not_subarchitectures_are_refused(
    backbone: MobileLLM, importance: Importance, change: dict, reason: str
) -> None:
    with pytest.raises(InvalidCandidate, match=reason):
        prune(backbone, importance, arch(**change))


def test_attention_cannot_come_back_to_a_skipped_backbone_layer() -> None:
    backbone = arch(layers=[LayerConfig(attention="skip", ffn_dim=64)])
    with pytest.raises(InvalidCandidate, match="attention weights the backbone layer does not have"):
        check_subarchitecture(backbone, arch(layers=[LayerConfig(attention="local", ffn_dim=64)]))
    check_subarchitecture(backbone, arch(dim=16, layers=[LayerConfig(attention="skip", ffn_dim=32)]))


def test_distillation_repairs_a_pruned_candidate(
    backbone: MobileLLM, importance: Importance, text: tuple[np.ndarray, np.ndarray]
) -> None:
    train, val = text
    quality, _student = candidate_quality(backbone, importance, small_target(), train, val, budget_tokens=40 * 1024)
    assert quality["loss"] < quality["loss_before_distill"]
    assert quality["ppl"] == pytest.approx(math.exp(quality["loss"]))
    assert quality["params"] == small_target().n_params()
    assert quality["distill_tokens"] == 40 * 1024
    assert heldout_loss(backbone, val) < quality["loss"] < math.log(VOCAB)


def test_distillation_refuses_a_budget_larger_than_the_corpus(backbone: MobileLLM) -> None:
    student = copy.deepcopy(backbone)
    with pytest.raises(UserError, match="fewer than the distillation budget"):
        distill(student, backbone, markov_text(5000, seed=3), budget_tokens=8192)
    with pytest.raises(UserError, match="too few for 64 windows"):
        heldout_loss(backbone, markov_text(5000, seed=3))


def encode(text: str) -> list[int]:
    return [int(word) for word in text.split()]


def test_multiple_choice_accuracy_on_questions_with_known_answers(backbone: MobileLLM, tmp_path: Path) -> None:
    questions = [
        {"context": "3 4 5 6 7", "choices": ["8 9 10", "20 2 17"], "label": 0},
        {"context": "10 11 12", "choices": ["0 5", "13 14", "9 9"], "label": 1},
        {"context": "28 29 30 31", "choices": ["7", "31", "0"], "label": 2},
        # The right answer is long; summed log-likelihood still prefers it over a wrong short one.
        {"context": "1 2 3", "choices": ["15", "4 5 6 7 8 9"], "label": 1},
    ]
    path = tmp_path / "questions.jsonl"
    path.write_text("\n".join(json.dumps(q) for q in questions) + "\n")
    result = multiple_choice_accuracy(backbone, encode, path)
    assert result == {"accuracy": 1.0, "accuracy_normalised": 1.0, "questions": 4}
    wrong = [q | {"label": (q["label"] + 1) % len(q["choices"])} for q in questions]
    path.write_text("\n".join(json.dumps(q) for q in wrong))
    assert multiple_choice_accuracy(backbone, encode, path)["accuracy"] == 0.0


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (None, "does not exist"),
        ("", "holds no questions"),
        ('{"context": "1 2", "choices": ["3", "4"]', "not a JSON object"),
        ('{"context": "1 2", "choices": ["3"], "label": 0}', "at least two text choices"),
        ('{"context": "1 2", "choices": ["3", "4"], "label": 2}', "label that is not the index"),
    ],
)
def test_bad_multiple_choice_files_are_one_sentence(
    backbone: MobileLLM, tmp_path: Path, content: str | None, reason: str
) -> None:
    path = tmp_path / "questions.jsonl"
    if content is not None:
        path.write_text(content)
    with pytest.raises(UserError, match=reason):
        multiple_choice_accuracy(backbone, encode, path)
