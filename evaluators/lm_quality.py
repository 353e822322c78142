"""Quality of a MobileLLM-Flash candidate: held-out loss after inheriting and distilling, and zero-shot accuracy.

``candidate_quality`` is what a search trial runs: prune the backbone to the candidate (inherited weights),
score it, distil it for the fixed token budget, score it again. ``multiple_choice_accuracy`` scores a local
JSONL multiple-choice set by the log-likelihood the model gives each choice after the context.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from hilnas.errors import UserError
from search.families.mobilellm_flash.distill import distill, heldout_loss
from search.families.mobilellm_flash.importance import Importance
from search.families.mobilellm_flash.model import MobileLLM
from search.families.mobilellm_flash.pruning import prune
from search.families.mobilellm_flash.space import ArchConfig


def candidate_quality(
    teacher: MobileLLM,
    importance: Importance,
    target: ArchConfig,
    train_tokens: np.ndarray,
    val_tokens: np.ndarray,
    budget_tokens: int,
    seed: int = 0,
    threads: int = 1,
    batch_size: int = 8,
    seq_len: int = 128,
    eval_windows: int = 64,
) -> tuple[dict[str, float], MobileLLM]:
    """Held-out loss (nats/token) and perplexity of the candidate after distillation, and before it; and the
    distilled candidate itself (the model a chosen candidate is exported from).

    Deterministic for a seed (at a fixed thread count): pruning is, and distillation draws its windows
    from ``seed``. ``seq_len`` and ``eval_windows`` should be the backbone's own (``Backbone.info["heldout"]``),
    so that candidates and backbone are scored on the same held-out windows.
    """
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        student = prune(teacher, importance, target)
        before = heldout_loss(student, val_tokens, seq_len, eval_windows)
        stats = distill(
            student, teacher, train_tokens, budget_tokens, seq_len=seq_len, batch_size=batch_size, seed=seed
        )
        loss = heldout_loss(student, val_tokens, seq_len, eval_windows)
    finally:
        torch.set_num_threads(previous_threads)
    quality = {
        "loss": loss,
        "ppl": math.exp(loss),
        "loss_before_distill": before,
        "params": float(target.n_params()),
        "distill_seconds": stats["seconds"],
        "distill_tokens": float(stats["tokens"]),
    }
    return quality, student


@torch.no_grad()
def multiple_choice_accuracy(model: MobileLLM, encode: Callable[[str], Sequence[int]], path: Path | str) -> dict:
    """Zero-shot accuracy on a JSONL file of {"context": str, "choices": [str, ...], "label": int} lines.

    Each choice is scored by the summed log-likelihood of its tokens after the context ("accuracy") and by
    their mean log-likelihood ("accuracy_normalised", which does not favour short choices). Returns both
    and the number of questions.
    """
    questions = _read_questions(Path(path))
    model.eval()
    correct_sum = correct_mean = 0
    for number, (context, choices, label) in enumerate(questions, start=1):
        context_ids = list(encode(context))
        choice_ids = [list(encode(choice)) for choice in choices]
        if not context_ids or not all(choice_ids):
            raise UserError(f"Question {number} of {path} has a context or choice that encodes to no tokens.")
        total, count = _choice_log_likelihoods(model, context_ids, choice_ids)
        correct_sum += int(total.argmax()) == label
        correct_mean += int((total / count).argmax()) == label
    return {
        "accuracy": correct_sum / len(questions),
        "accuracy_normalised": correct_mean / len(questions),
        "questions": len(questions),
    }


def _choice_log_likelihoods(
    model: MobileLLM, context: list[int], choices: list[list[int]]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed log-probabilities of each choice's tokens after the context, and each choice's token count.

    All choices run as one right-padded batch; causal attention keeps the padding out of the scored positions.
    The context is cut from the left when context + choice would not fit the model's positions.
    """
    longest = max(len(choice) for choice in choices)
    room = model.config.max_context + 1 - longest
    if room < 1:
        raise UserError(f"A choice of {longest} tokens does not fit the model's {model.config.max_context} positions.")
    context = context[-room:]
    length = len(context) + longest
    batch = torch.zeros(len(choices), length, dtype=torch.long)
    scored = torch.zeros(len(choices), length - 1, dtype=torch.bool)
    for row, choice in enumerate(choices):
        batch[row, : len(context) + len(choice)] = torch.tensor(context + choice)
        scored[row, len(context) - 1 : len(context) - 1 + len(choice)] = True
    log_probs = F.log_softmax(model(batch[:, :-1]).float(), dim=-1)
    token_log_probs = log_probs.gather(-1, batch[:, 1:, None]).squeeze(-1)
    return (token_log_probs * scored).sum(dim=1), scored.sum(dim=1)


def _read_questions(path: Path) -> list[tuple[str, list[str], int]]:
    if not path.is_file():
        raise UserError(f"The multiple-choice file {path} does not exist.")
    questions = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            context, choices, label = item["context"], item["choices"], item["label"]
        except (json.JSONDecodeError, TypeError, KeyError):
            raise UserError(f"Line {number} of {path} is not a JSON object with context, choices and label.") from None
        valid_choices = isinstance(choices, list) and len(choices) >= 2 and all(isinstance(c, str) for c in choices)
        if not isinstance(context, str) or not valid_choices:
            raise UserError(f"Line {number} of {path} needs a text context and a list of at least two text choices.")
        if not isinstance(label, int) or isinstance(label, bool) or not 0 <= label < len(choices):
            raise UserError(f"Line {number} of {path} has a label that is not the index of one of its choices.")
        questions.append((context, choices, label))
    if not questions:
        raise UserError(f"The multiple-choice file {path} holds no questions.")
    return questions
