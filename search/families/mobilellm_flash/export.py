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


@torch.no_grad()
def generate_eager(model: MobileLLM, prompt: list[int], new_tokens: int, context: int, pad_id: int) -> list[int]:
    """Greedy tokens from PyTorch under the exported program's rolling-cache policy (the reference)."""
    model = model.eval()
    logits, cache = model.prefill(_prompt_window(prompt, context, pad_id))
    lengths = _cache_lengths(model, context)
    out = [int(logits.argmax(-1))]
    for step in range(new_tokens - 1):
        token = torch.tensor([[out[-1]]])
        logits, new_kv = model.decode(token, torch.tensor([context + step]), cache)
        cache = _roll(cache, new_kv, lengths)
        out.append(int(logits.argmax(-1)))
    return out


def generate_with_program(path: Path, model: MobileLLM, prompt: list[int], new_tokens: int) -> list[int]:
    """Greedy tokens from the ``.pte`` at ``path``, run by ExecuTorch's runtime (``model`` gives only shapes)."""
    from executorch.runtime import Runtime

    program = Runtime.get().load_program(path)
    context = int(program.load_method("context_len").execute([])[0])
    pad_id = int(program.load_method("pad_id").execute([])[0])
    prefill, decode = program.load_method("prefill"), program.load_method("decode")
    outputs = prefill.execute([_prompt_window(prompt, context, pad_id)])
    half = (len(outputs) - 1) // 2
    cache = list(zip(outputs[1 : 1 + half], outputs[1 + half :], strict=True))
    lengths = _cache_lengths(model, context)
    out = [int(outputs[0].argmax(-1))]
    for step in range(new_tokens - 1):
        inputs = [torch.tensor([[out[-1]]]), torch.tensor([context + step])]
        outputs = decode.execute([*inputs, *(k for k, _ in cache), *(v for _, v in cache)])
        new_kv = list(zip(outputs[1 : 1 + half], outputs[1 + half :], strict=True))
        cache = _roll(cache, new_kv, lengths)
        out.append(int(outputs[0].argmax(-1)))
    return out
