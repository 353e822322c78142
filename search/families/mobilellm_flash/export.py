"""Deployable ``.pte`` programs of chosen candidates, and text generation through ExecuTorch's runtime.

One program holds two methods, the graphs a phone runs: ``prefill`` (a prompt of ``context``
tokens -> last logits and the KV cache) and ``decode`` (one token against a cache of ``context``
past positions -> logits and that token's keys/values). Shapes are static, as XNNPACK wants them,
so generation keeps a rolling cache: after each step the oldest position of a full-attention
layer's cache is dropped (a local layer keeps its window). The first new token therefore sees the
whole prompt, later ones the last ``context`` tokens. ``generate_eager`` applies the same policy in
PyTorch, which is how an export is checked: both must produce the same tokens.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import Tensor

from search.families.mobilellm_flash.model import KV, DecodeGraph, MobileLLM, PrefillGraph, example_inputs
from search.families.mobilellm_flash.space import Workload


def export_program(model: MobileLLM, context: int, path: Path, pad_id: int) -> Path:
    """Write ``model`` as one ExecuTorch program with ``prefill`` and ``decode`` methods at ``context`` tokens."""
    from latency_models.backends import get_backend

    workload = Workload(prefill_len=context, decode_kv_len=context)
    backend = get_backend("executorch-xnnpack")
    model = model.eval()
    program = backend.lower(
        {
            "prefill": (PrefillGraph(model), example_inputs(model, workload, "prefill")),
            "decode": (DecodeGraph(model), example_inputs(model, workload, "decode")),
        },
        label="generation program",
        constants={"context_len": context, "vocab_size": model.config.vocab_size, "pad_id": pad_id},
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    partial.write_bytes(program.buffer)
    partial.replace(path)
    return path


def _prompt_window(prompt: list[int], context: int, pad_id: int) -> Tensor:
    """The last ``context`` prompt tokens, left-padded with ``pad_id`` (the document separator) when shorter."""
    window = ([pad_id] * context + list(prompt))[-context:]
    return torch.tensor([window], dtype=torch.long)


def _roll(cache: list[KV], new_kv: list[KV], lengths: list[int]) -> list[KV]:
    """Append each layer's new keys/values and keep that layer's last ``length`` positions (contiguous:
    the runtime refuses strided inputs)."""
    return [
        (torch.cat((k, nk), 2)[:, :, -n:].contiguous(), torch.cat((v, nv), 2)[:, :, -n:].contiguous())
        for (k, v), (nk, nv), n in zip(cache, new_kv, lengths, strict=True)
    ]


def _cache_lengths(model: MobileLLM, context: int) -> list[int]:
    return [context if n is None else n for n in model.cache_lengths(context)]


Runner = Callable[[list[Tensor]], Sequence[Tensor]]


def _kv_pairs(outputs: Sequence[Tensor]) -> list[KV]:
    """(keys, values) per layer from a graph's flat outputs: logits, every layer's keys, every layer's values."""
    half = (len(outputs) - 1) // 2
    return list(zip(outputs[1 : 1 + half], outputs[1 + half :], strict=True))


def _greedy(
    prefill: Runner, decode: Runner, lengths: list[int], prompt: list[int], new_tokens: int, context: int, pad_id: int
) -> list[int]:
    """Greedy tokens through the flat prefill/decode signatures that ``PrefillGraph``/``DecodeGraph`` export."""
    outputs = prefill([_prompt_window(prompt, context, pad_id)])
    cache = _kv_pairs(outputs)
    out = [int(outputs[0].argmax(-1))]
    for step in range(new_tokens - 1):
        inputs = [torch.tensor([[out[-1]]]), torch.tensor([context + step])]
        outputs = decode([*inputs, *(k for k, _ in cache), *(v for _, v in cache)])
        cache = _roll(cache, _kv_pairs(outputs), lengths)
        out.append(int(outputs[0].argmax(-1)))
    return out


@torch.no_grad()
def generate_eager(model: MobileLLM, prompt: list[int], new_tokens: int, context: int, pad_id: int) -> list[int]:
    """Greedy tokens from PyTorch under the exported program's rolling-cache policy (the reference)."""
    prefill, decode = PrefillGraph(model.eval()), DecodeGraph(model)
    return _greedy(
        lambda inputs: prefill(*inputs),
        lambda inputs: decode(*inputs),
        _cache_lengths(model, context),
        prompt,
        new_tokens,
        context,
        pad_id,
    )


def generate_with_program(path: Path, model: MobileLLM, prompt: list[int], new_tokens: int) -> list[int]:
    """Greedy tokens from the ``.pte`` at ``path``, run by ExecuTorch's runtime (``model`` gives only shapes)."""
    from executorch.runtime import Runtime

    program = Runtime.get().load_program(path)
    context = int(program.load_method("context_len").execute([])[0])
    pad_id = int(program.load_method("pad_id").execute([])[0])
    prefill, decode = program.load_method("prefill"), program.load_method("decode")
    lengths = _cache_lengths(model, context)
    return _greedy(prefill.execute, decode.execute, lengths, prompt, new_tokens, context, pad_id)
