"""A MobileLLM-style decoder whose every layer picks its attention: full, local (sliding window) or none.

Read top to bottom: RMSNorm, rotary embeddings, grouped-query attention (three modes), SwiGLU,
the block, the model, and the two graphs a phone runs (prefill a prompt, decode one token
against a KV cache). Built from one ``ArchConfig`` (see ``space.py``).

Shapes: B batch, T tokens, H query heads, G KV heads, D head_dim, C model dim.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from search.families.mobilellm_flash.space import ArchConfig, LayerConfig, Workload

KV = tuple[Tensor, Tensor]
QKVTransform = Callable[[Tensor, Tensor, Tensor], tuple[Tensor, Tensor, Tensor]]


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        # The mean is taken over a (..., 1, C) view: XNNPACK delegates a mean only over the two
        # innermost dims of a 4-D tensor, and a graph break per norm would dominate small models.
        squares = (x * x).view(*x.shape[:-1], 1, x.shape[-1])
        mean_square = squares.mean(dim=(-2, -1), keepdim=True).view(*x.shape[:-1], 1)
        return x * torch.rsqrt(mean_square + self.eps) * self.weight


def rope_tables(head_dim: int, positions: int, theta: float) -> tuple[Tensor, Tensor]:
    """cos and sin of every position's rotation angles, shape (positions, head_dim / 2)."""
    inv_freq = 1.0 / theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
    angles = torch.outer(torch.arange(positions, dtype=torch.float32), inv_freq)
    return angles.cos(), angles.sin()


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate the two halves of each head's features by the position's angles (x: B, heads, T, D)."""
    half = x.shape[-1] // 2
    first, second = x[..., :half], x[..., half:]
    return torch.cat((first * cos - second * sin, first * sin + second * cos), dim=-1)


class Attention(nn.Module):
    """Grouped-query attention; ``mode`` is "full" (causal) or "local" (the last ``window`` keys).

    Attention is written out (matmul, additive mask, softmax) rather than through
    ``scaled_dot_product_attention`` so that the exported graph is one XNNPACK partition and the
    masks fold to constants. The R = H / G query heads sharing a KV head are stacked as extra
    query rows, so K/V are never copied per head.

    Hook ``qkv_transform``: (q, k, v) -> (q, k, v) after RoPE in every path, its k/v also cached (None: no-op).
    """

    def __init__(self, dim: int, head_dim: int, layer: LayerConfig, window: int) -> None:
        super().__init__()
        self.mode, self.window, self.head_dim = layer.attention, window, head_dim
        self.n_heads, self.n_kv_heads = layer.n_heads, layer.n_kv_heads
        self.q_proj = nn.Linear(dim, layer.n_heads * head_dim, bias=False)
        self.k_proj = nn.Linear(dim, layer.n_kv_heads * head_dim, bias=False)
        self.v_proj = nn.Linear(dim, layer.n_kv_heads * head_dim, bias=False)
        self.o_proj = nn.Linear(layer.n_heads * head_dim, dim, bias=False)
        self.qkv_transform: QKVTransform | None = None

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor, past: KV | None) -> tuple[Tensor, KV]:
        """Attend over ``x`` (and the cached keys/values ``past`` when decoding); returns the new K/V."""
        b, t, _ = x.shape
        q = self.q_proj(x).view(b, t, self.n_heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(b, t, self.n_kv_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(b, t, self.n_kv_heads, self.head_dim).transpose(1, 2)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if self.qkv_transform is not None:
            q, k, v = self.qkv_transform(q, k, v)
        if past is not None:
            # Decoding: the cache holds exactly the keys this token may see (a local layer's
            # cache is kept to window - 1 entries), so no mask is needed.
            out = self._attend(q, torch.cat((past[0], k), 2), torch.cat((past[1], v), 2), None)
        elif self.mode == "local" and t > self.window:
            out = self._chunked_local(q, k, v)
        else:
            width = self.window if self.mode == "local" else t
            out = self._attend(q, k, v, _band_bias(t, t, 0, width, x.device))
        return self.o_proj(out.transpose(1, 2).reshape(b, t, -1)), (k, v)

    def _attend(self, q: Tensor, k: Tensor, v: Tensor, bias: Tensor | None) -> Tensor:
        """q (B, H, T, D) against k, v (B, G, S, D); ``bias`` (T, S) is 0 where allowed, -inf elsewhere."""
        b, h, t, d = q.shape
        rows = q.reshape(b, self.n_kv_heads, (h // self.n_kv_heads) * t, d)
        scores = _bmm(rows, k.transpose(-1, -2)) * d**-0.5
        if bias is not None:
            scores = scores + bias.repeat(h // self.n_kv_heads, 1)
        return _bmm(torch.softmax(scores, dim=-1), v).reshape(b, h, t, d)

    def _chunked_local(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        """Sliding-window attention in O(T * window): each chunk of ``window`` queries sees its own
        chunk and the previous one, masked to the band. This is where local layers save prefill time."""
        b, h, t, d = q.shape
        g, r, c = self.n_kv_heads, h // self.n_kv_heads, self.window
        n = -(-t // c)
        pad = n * c - t
        q = F.pad(q, (0, 0, 0, pad)).view(b, g, r, n, c, d).transpose(2, 3).reshape(b, g, n, r * c, d)
        k, v = (F.pad(z, (0, 0, c, pad)).view(b, g, n + 1, c, d) for z in (k, v))
        k = torch.cat((k[:, :, :-1], k[:, :, 1:]), dim=3)  # (b, g, n, 2c, d): previous chunk + own chunk
        v = torch.cat((v[:, :, :-1], v[:, :, 1:]), dim=3)
        bias = _band_bias(c, 2 * c, c, c, q.device).repeat(r, 1)
        first = bias + _band_bias(1, 2 * c, 2 * c - 1, c, q.device)  # chunk 0 has no previous chunk
        bias = torch.stack([first] + [bias] * (n - 1))
        scores = _bmm(q, k.transpose(-1, -2)) * d**-0.5 + bias
        out = _bmm(torch.softmax(scores, dim=-1), v)  # (b, g, n, r * c, d)
        out = out.view(b, g, n, r, c, d).transpose(2, 3).reshape(b, h, n * c, d)
        return out[:, :, :t]


def _bmm(a: Tensor, b: Tensor) -> Tensor:
    """Batched matmul over any leading dims as one ``bmm``: ``@`` on 4-D tensors exports as
    expand + bmm, and XNNPACK cannot delegate the expand."""
    out = torch.bmm(a.reshape(-1, *a.shape[-2:]), b.reshape(-1, *b.shape[-2:]))
    return out.view(*a.shape[:-1], b.shape[-1])


def _band_bias(n_queries: int, n_keys: int, offset: int, width: int, device: torch.device) -> Tensor:
    """0 where query i (at key position i + offset) may see key j (j <= i + offset < j + width), else -inf."""
    distance = torch.arange(n_queries, device=device)[:, None] + offset - torch.arange(n_keys, device=device)[None]
    allowed = (distance >= 0) & (distance < width)
    return torch.zeros(n_queries, n_keys, device=device).masked_fill(~allowed, float("-inf"))


class SwiGLU(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(dim, hidden, bias=False)
        self.up_proj = nn.Linear(dim, hidden, bias=False)
        self.down_proj = nn.Linear(hidden, dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Block(nn.Module):
    """Pre-norm residual block; a "skip" layer has no attention sub-block at all."""

    def __init__(self, config: ArchConfig, layer: LayerConfig) -> None:
        super().__init__()
        self.has_attention = layer.attention != "skip"
        if self.has_attention:
            self.attn_norm = RMSNorm(config.dim, config.norm_eps)
            self.attn = Attention(config.dim, config.head_dim, layer, config.window)
        self.ffn_norm = RMSNorm(config.dim, config.norm_eps)
        self.ffn = SwiGLU(config.dim, layer.ffn_dim)

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor, past: KV | None) -> tuple[Tensor, KV | None]:
        new_kv = None
        if self.has_attention:
            attended, new_kv = self.attn(self.attn_norm(x), cos, sin, past)
            x = x + attended
        return x + self.ffn(self.ffn_norm(x)), new_kv


class MobileLLM(nn.Module):
    """The decoder. ``forward`` is for training; ``prefill``/``decode`` are the inference paths.

    The KV cache is a list with one (keys, values) pair per executed attention layer, in
    execution order (a shared block that runs twice has two entries).
    """

    def __init__(self, config: ArchConfig) -> None:
        super().__init__()
        self.config = config
        self.tok_embeddings = nn.Embedding(config.vocab_size, config.dim)
        self.blocks = nn.ModuleList(Block(config, layer) for layer in config.layers)
        self.norm = RMSNorm(config.dim, config.norm_eps)
        self.output = nn.Linear(config.dim, config.vocab_size, bias=False)
        if config.share_embeddings:
            self.output.weight = self.tok_embeddings.weight
        cos, sin = rope_tables(config.head_dim, config.max_context, config.rope_theta)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02)

    def executed_blocks(self) -> list[Block]:
        return [block for block in self.blocks for _ in range(self.config.block_repeat)]

    def _run(self, tokens: Tensor, cos: Tensor, sin: Tensor, cache: list[KV] | None) -> tuple[Tensor, list[KV]]:
        x = self.tok_embeddings(tokens)
        new_cache: list[KV] = []
        entries = iter(cache) if cache is not None else None
        for block in self.executed_blocks():
            past = next(entries) if entries is not None and block.has_attention else None
            x, kv = block(x, cos, sin, past)
            if kv is not None:
                new_cache.append(kv)
        return self.norm(x), new_cache

    def forward(self, tokens: Tensor) -> Tensor:
        """Logits for every position of ``tokens`` (B, T) -> (B, T, vocab)."""
        t = tokens.shape[1]
        hidden, _ = self._run(tokens, self.rope_cos[:t], self.rope_sin[:t], None)
        return self.output(hidden)

    def prefill(self, tokens: Tensor) -> tuple[Tensor, list[KV]]:
        """The last position's logits (B, vocab) and the KV cache the prompt leaves behind."""
        t = tokens.shape[1]
        hidden, cache = self._run(tokens, self.rope_cos[:t], self.rope_sin[:t], None)
        return self.output(hidden[:, -1]), self.trim_cache(cache)

    def decode(self, token: Tensor, position: Tensor, cache: list[KV]) -> tuple[Tensor, list[KV]]:
        """Logits of one new token (B, 1) at ``position`` (a 1-element tensor) and its keys/values."""
        cos, sin = self.rope_cos[position], self.rope_sin[position]
        hidden, new_kv = self._run(token, cos, sin, cache)
        return self.output(hidden[:, -1]), new_kv

    def trim_cache(self, cache: list[KV]) -> list[KV]:
        """Keep what the next token may see: everything for full layers, window - 1 keys for local ones."""
        keep = self.cache_lengths(None)
        return [(k, v) if n is None else (k[:, :, -n:], v[:, :, -n:]) for (k, v), n in zip(cache, keep, strict=True)]

    def append_to_cache(self, cache: list[KV], new_kv: list[KV]) -> list[KV]:
        grown = [(torch.cat((k, nk), 2), torch.cat((v, nv), 2)) for (k, v), (nk, nv) in zip(cache, new_kv, strict=True)]
        return self.trim_cache(grown)

    def cache_lengths(self, kv_len: int | None) -> list[int | None]:
        """Per cached layer: how many past positions the next token sees (None: all of ``kv_len``)."""
        lengths: list[int | None] = []
        for layer in self.config.executed_layers():
            if layer.attention == "full":
                lengths.append(kv_len)
            elif layer.attention == "local":
                limit = self.config.window - 1
                lengths.append(limit if kv_len is None else min(kv_len, limit))
        return lengths

    @torch.no_grad()
    def generate(self, tokens: Tensor, new_tokens: int) -> Tensor:
        """Greedy continuation through prefill + cached decode (what the exported graphs compute)."""
        logits, cache = self.prefill(tokens)
        out = [logits.argmax(-1, keepdim=True)]
        for step in range(new_tokens - 1):
            position = torch.tensor([tokens.shape[1] + step])
            logits, new_kv = self.decode(out[-1], position, cache)
            cache = self.append_to_cache(cache, new_kv)
            out.append(logits.argmax(-1, keepdim=True))
        return torch.cat([tokens, *out], dim=1)


class PrefillGraph(nn.Module):
    """Exportable prefill: tokens (1, L) -> (last logits, keys..., values...) with static shapes."""

    def __init__(self, model: MobileLLM) -> None:
        super().__init__()
        self.model = model

    def forward(self, tokens: Tensor) -> tuple[Tensor, ...]:
        logits, cache = self.model.prefill(tokens)
        return (logits, *(k for k, _ in cache), *(v for _, v in cache))


class DecodeGraph(nn.Module):
    """Exportable decode step: (token, position, keys..., values...) -> (logits, new keys..., new values...)."""

    def __init__(self, model: MobileLLM) -> None:
        super().__init__()
        self.model = model

    def forward(self, token: Tensor, position: Tensor, *cache_tensors: Tensor) -> tuple[Tensor, ...]:
        half = len(cache_tensors) // 2
        cache = list(zip(cache_tensors[:half], cache_tensors[half:], strict=True))
        logits, new_kv = self.model.decode(token, position, cache)
        return (logits, *(k for k, _ in new_kv), *(v for _, v in new_kv))


def example_inputs(model: MobileLLM, workload: Workload, phase: str, seed: int = 0) -> tuple[Tensor, ...]:
    """Inputs of the prefill or decode graph at the workload's shapes (random tokens and cache)."""
    generator = torch.Generator().manual_seed(seed)
    config = model.config
    if phase == "prefill":
        return (torch.randint(0, config.vocab_size, (1, workload.prefill_len), generator=generator),)
    if phase != "decode":
        raise ValueError(f"unknown phase {phase!r}; expected 'prefill' or 'decode'")
    token = torch.randint(0, config.vocab_size, (1, 1), generator=generator)
    position = torch.tensor([workload.decode_kv_len])
    heads = [layer.n_kv_heads for layer in config.executed_layers() if layer.attention != "skip"]
    lengths = model.cache_lengths(workload.decode_kv_len)
    shapes = [(1, g, n, config.head_dim) for g, n in zip(heads, lengths, strict=True)]
    keys = [torch.randn(shape, generator=generator) for shape in shapes]
    values = [torch.randn(shape, generator=generator) for shape in shapes]
    return (token, position, *keys, *values)


def phase_graph(model: MobileLLM, phase: str) -> nn.Module:
    return PrefillGraph(model) if phase == "prefill" else DecodeGraph(model)
