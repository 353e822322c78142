"""A SAM 2-style video object segmenter at CPU scale, with three memory variants.

Per frame: the image encoder turns the frame into a stride-8 feature map (plus a stride-4 map for the
decoder); memory attention conditions that map on a memory bank (self-attention over the frame, then
cross-attention to the bank, with 2D sine position encodings); the mask decoder turns the conditioned
map into mask logits, an object-presence score and an object pointer; the memory encoder fuses the frame
features with the predicted mask into the frame's memory, which joins the bank. The first frame is the
prompt: its given mask is both its output and its memory. The bank keeps the prompted frame plus the last
``memory_frames`` frames, each tagged with a learned temporal embedding of its slot.

How a stored frame's memory is kept is the searched difference:

* ``dense`` (SAM 2): every feature-map token.
* ``pooled`` (EfficientTAM): keys and values average-pooled 2x2; each pooled key's attention score gets
  ``log 4`` so it weighs like the four tokens it stands for against unpooled tokens (object pointers).
  Pooling the memory features before the key/value projections is the same as pooling the projected
  keys and values, because both are linear.
* ``perceiver`` (EdgeTAM's 2D Spatial Perceiver): ``global_latents`` learned latents attend to all tokens
  (their outputs carry no position encoding) and ``patch_latents`` latents, one per window of a square
  grid, attend only to their window and keep the window centre's position encoding. Each patch latent
  starts from a learned vector plus its window's mean, so it knows what it summarises.

Compressing happens once, when a frame is stored, so it is counted as memory encoding; memory attention
then reads ``(1 + memory_frames) * tokens_per_frame`` tokens plus one pointer per stored predicted frame.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import asdict, dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

MemoryKind = Literal["dense", "pooled", "perceiver"]
MEMORY_KINDS: tuple[str, ...] = ("dense", "pooled", "perceiver")
STRIDE = 8
PROMPT_LOGIT = 10.0
LOCALITY_INIT = 0.5  # softplus(0.5) ~ 0.97: a token 2 cells away starts ~4 logits behind
MASK_SCALE = 20.0  # SAM 2 feeds masks to the memory encoder as 20 * p - 10 so they are not drowned by pixels
PIXEL_MEAN = (0.485, 0.456, 0.406)
PIXEL_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class EdgeTAMConfig:
    """One architecture; ``problems()`` lists why it cannot be built (empty when it can)."""

    resolution: int = 64
    encoder_width: int = 32
    encoder_depth: int = 2
    dim: int = 64
    memory_dim: int = 32
    heads: int = 2
    attention_layers: int = 2
    memory_frames: int = 6
    memory: MemoryKind = "dense"
    global_latents: int = 8
    patch_latents: int = 16

    @property
    def feature_size(self) -> int:
        return self.resolution // STRIDE

    def tokens_per_frame(self) -> int:
        """Spatial memory tokens one stored frame contributes to the bank."""
        if self.memory == "dense":
            return self.feature_size**2
        if self.memory == "pooled":
            return (self.feature_size // 2) ** 2
        return self.global_latents + self.patch_latents

    def problems(self) -> list[str]:
        found = []
        if self.resolution % STRIDE:
            found.append(f"resolution {self.resolution} is not a multiple of the encoder stride {STRIDE}")
        if self.dim % self.heads or self.memory_dim % self.heads:
            found.append(f"{self.heads} heads do not divide dim {self.dim} and memory_dim {self.memory_dim}")
        if self.dim % 8 or self.memory_dim % 4:
            found.append("dim must be a multiple of 8 and memory_dim of 4 (sine position encodings, decoder)")
        if self.memory == "pooled" and self.feature_size % 2:
            found.append(f"2x2 pooling needs an even feature map, not {self.feature_size}x{self.feature_size}")
        if self.memory == "perceiver":
            grid = math.isqrt(self.patch_latents)
            if grid * grid != self.patch_latents:
                found.append(f"{self.patch_latents} patch latents do not form a square grid of windows")
            elif self.feature_size % grid:
                found.append(
                    f"{self.patch_latents} patch latents ({grid}x{grid} windows) do not tile the "
                    f"{self.feature_size}x{self.feature_size} feature map of resolution {self.resolution}"
                )
        return found

    def as_dict(self) -> dict:
        return asdict(self)


# ----------------------------------------------------------------------------- building blocks


def sine_encoding(ys: Tensor, xs: Tensor, channels: int) -> Tensor:
    """2D sine/cosine encoding ``[n, channels]`` of positions ``ys, xs`` in [0, 1] (a quarter of channels each)."""
    quarter = channels // 4
    frequencies = 2 * math.pi * 2 ** torch.linspace(0, 5, quarter)
    ay, ax = ys[:, None] * frequencies, xs[:, None] * frequencies
    return torch.cat([ay.sin(), ay.cos(), ax.sin(), ax.cos()], dim=1)


def grid_centres(height: int, width: int) -> Tensor:
    """(y, x) of the cell centres of a ``height x width`` grid in [0, 1], row-major, ``[height * width, 2]``."""
    ys = (torch.arange(height) + 0.5) / height
    xs = (torch.arange(width) + 0.5) / width
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([grid_y.flatten(), grid_x.flatten()], dim=1)


def grid_encoding(height: int, width: int, channels: int) -> Tensor:
    """Encodings of the cell centres of a ``height x width`` grid, row-major, ``[height * width, channels]``."""
    centres = grid_centres(height, width)
    return sine_encoding(centres[:, 0], centres[:, 1], channels)


def no_place(count: int) -> Tensor:
    """Coordinates of tokens that stand for no place (global latents, object pointers)."""
    return torch.full((count, 2), float("nan"))


class Attention(nn.Module):
    """Multi-head attention whose keys/values may have their own width; ``bias`` (broadcast to
    ``[batch, heads, queries, keys]``) is added to the scores."""

    def __init__(self, dim: int, heads: int, kv_dim: int | None = None) -> None:
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(kv_dim or dim, dim)
        self.v = nn.Linear(kv_dim or dim, dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, query: Tensor, key: Tensor, value: Tensor, bias: Tensor | None = None) -> Tensor:
        batch, n_query, dim = query.shape

        def split(x: Tensor) -> Tensor:
            return x.view(batch, x.shape[1], self.heads, dim // self.heads).transpose(1, 2)

        attended = F.scaled_dot_product_attention(split(self.q(query)), split(self.k(key)), split(self.v(value)), bias)
        return self.out(attended.transpose(1, 2).reshape(batch, n_query, dim))


class MLP(nn.Sequential):
    def __init__(self, dim: int, out_dim: int | None = None, expansion: int = 2) -> None:
        super().__init__(nn.Linear(dim, dim * expansion), nn.GELU(), nn.Linear(dim * expansion, out_dim or dim))


class ConvBlock(nn.Module):
    """ConvNeXt-style residual block: depthwise 5x5, channel norm, pointwise expansion."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(channels, channels, 5, padding=2, groups=channels)
        self.norm = nn.GroupNorm(1, channels)
        self.pointwise = nn.Sequential(
            nn.Conv2d(channels, channels * 2, 1), nn.GELU(), nn.Conv2d(channels * 2, channels, 1)
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.pointwise(self.norm(self.depthwise(x)))


def _down(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, stride=2, padding=1), nn.GroupNorm(1, out_channels), nn.GELU()
    )


# ----------------------------------------------------------------------------- the four components


class ImageEncoder(nn.Module):
    """Frames ``[B, 3, R, R]`` to stride-8 features ``[B, dim, R/8, R/8]`` and stride-4 features for the decoder."""

    def __init__(self, config: EdgeTAMConfig) -> None:
        super().__init__()
        width = config.encoder_width
        self.stem = nn.Sequential(_down(3, width // 2), _down(width // 2, width))
        self.down = _down(width, width)
        self.blocks = nn.Sequential(*[ConvBlock(width) for _ in range(config.encoder_depth)])
        self.neck = nn.Conv2d(width, config.dim, 1)
        self.high_res_neck = nn.Conv2d(width, config.dim // 4, 1)

    def forward(self, frames: Tensor) -> tuple[Tensor, Tensor]:
        high_res = self.stem(frames)
        features = self.blocks(self.down(high_res))
        return self.neck(features), self.high_res_neck(high_res)


@dataclass
class MemoryEntry:
    """One stored frame: its memory tokens, their position encodings, places and attention-score biases."""

    tokens: Tensor  # [B, n, memory_dim]
    positions: Tensor  # [1, n, memory_dim]
    coordinates: Tensor  # [n, 2] (y, x) in [0, 1]; NaN for tokens without a place
    score_bias: Tensor  # [n]


class SpatialPerceiver(nn.Module):
    """EdgeTAM's 2D Spatial Perceiver: global latents over all tokens plus one patch latent per window."""

    def __init__(self, config: EdgeTAMConfig) -> None:
        super().__init__()
        channels = config.memory_dim
        self.grid = math.isqrt(config.patch_latents)
        self.global_latents = nn.Parameter(torch.randn(config.global_latents, channels) * 0.02)
        self.patch_latent = nn.Parameter(torch.zeros(channels))
        self.norm_tokens = nn.LayerNorm(channels)
        self.norm_latents = nn.LayerNorm(channels)
        self.cross = Attention(channels, config.heads)
        self.norm_mlp = nn.LayerNorm(channels)
        self.mlp = MLP(channels)
        patch_positions = grid_encoding(self.grid, self.grid, channels)
        global_positions = torch.zeros(config.global_latents, channels)
        self.register_buffer("positions", torch.cat([global_positions, patch_positions])[None], persistent=False)
        coordinates = torch.cat([no_place(config.global_latents), grid_centres(self.grid, self.grid)])
        self.register_buffer("coordinates", coordinates, persistent=False)

    def forward(self, memory: Tensor) -> Tensor:
        batch, channels, height, width = memory.shape
        grid, window_h, window_w = self.grid, height // self.grid, width // self.grid
        tokens = self.norm_tokens(memory.flatten(2).transpose(1, 2))
        global_latents = self.global_latents.expand(batch, -1, -1)
        global_latents = global_latents + self.cross(self.norm_latents(global_latents), tokens, tokens)
        windows = (
            memory.view(batch, channels, grid, window_h, grid, window_w)
            .permute(0, 2, 4, 3, 5, 1)
            .reshape(batch * grid * grid, window_h * window_w, channels)
        )
        patch_latents = windows.mean(dim=1, keepdim=True) + self.patch_latent
        normed_windows = self.norm_tokens(windows)
        patch_latents = patch_latents + self.cross(self.norm_latents(patch_latents), normed_windows, normed_windows)
        latents = torch.cat([global_latents, patch_latents.view(batch, grid * grid, channels)], dim=1)
        return latents + self.mlp(self.norm_mlp(latents))


class MemoryEncoder(nn.Module):
    """Mask downsampler and fuser (SAM 2), then the variant's compression of the frame's memory."""

    def __init__(self, config: EdgeTAMConfig) -> None:
        super().__init__()
        self.kind = config.memory
        self.mask_downsampler = nn.Sequential(
            _down(1, 8), _down(8, 16), nn.Conv2d(16, config.dim, 3, stride=2, padding=1)
        )
        self.pixel_projection = nn.Conv2d(config.dim, config.dim, 1)
        self.fuser = ConvBlock(config.dim)
        self.out = nn.Conv2d(config.dim, config.memory_dim, 1)
        self.pointer_projection = nn.Linear(config.dim, config.memory_dim)
        self.perceiver = SpatialPerceiver(config) if config.memory == "perceiver" else None
        size = config.feature_size
        self.register_buffer("grid_positions", grid_encoding(size, size, config.memory_dim), persistent=False)

    def forward(self, features: Tensor, mask_probabilities: Tensor, pointer: Tensor | None) -> MemoryEntry:
        mask_features = self.mask_downsampler(mask_probabilities * MASK_SCALE - MASK_SCALE / 2)
        memory = self.out(self.fuser(self.pixel_projection(features) + mask_features))
        batch, channels, size, _ = memory.shape
        if self.perceiver is not None:
            tokens, positions, coordinates = (
                self.perceiver(memory),
                self.perceiver.positions,
                self.perceiver.coordinates,
            )
            bias = torch.zeros(tokens.shape[1])
        elif self.kind == "pooled":
            tokens = F.avg_pool2d(memory, 2).flatten(2).transpose(1, 2)
            grid = self.grid_positions.T.reshape(1, channels, size, size)
            positions = F.avg_pool2d(grid, 2).flatten(2).transpose(1, 2)
            coordinates = grid_centres(size // 2, size // 2)
            bias = torch.full((tokens.shape[1],), math.log(4.0))
        else:
            tokens, positions = memory.flatten(2).transpose(1, 2), self.grid_positions[None]
            coordinates = grid_centres(size, size)
            bias = torch.zeros(tokens.shape[1])
        if pointer is not None:
            tokens = torch.cat([tokens, self.pointer_projection(pointer)[:, None]], dim=1)
            positions = torch.cat([positions, torch.zeros(1, 1, channels)], dim=1)
            coordinates = torch.cat([coordinates, no_place(1)])
            bias = torch.cat([bias, torch.zeros(1)])
        return MemoryEntry(tokens, positions, coordinates, bias)


class MemoryAttentionLayer(nn.Module):
    """Self-attention over the frame, cross-attention to the bank, MLP (pre-norm).

    Besides the absolute sine encodings added to queries and keys, cross-attention scores get a relative
    2D term, ``-locality_h * squared distance`` in feature cells, with a learned ``locality`` per head.
    It plays the part of SAM 2's rotary encoding: a bank entry is first looked up near the same place,
    which a model trained for minutes on a CPU could not learn from absolute encodings alone.
    """

    def __init__(self, config: EdgeTAMConfig) -> None:
        super().__init__()
        self.norm_self, self.norm_cross, self.norm_mlp = (nn.LayerNorm(config.dim) for _ in range(3))
        self.self_attention = Attention(config.dim, config.heads)
        self.cross_attention = Attention(config.dim, config.heads, kv_dim=config.memory_dim)
        self.locality = nn.Parameter(torch.full((config.heads,), LOCALITY_INIT))
        self.mlp = MLP(config.dim)

    def forward(
        self, x: Tensor, positions: Tensor, memory: Tensor, memory_keys: Tensor, bias: Tensor, distances: Tensor
    ) -> Tensor:
        normed = self.norm_self(x)
        x = x + self.self_attention(normed + positions, normed + positions, normed)
        scores = bias - F.softplus(self.locality).view(1, -1, 1, 1) * distances
        x = x + self.cross_attention(self.norm_cross(x) + positions, memory_keys, memory, scores)
        return x + self.mlp(self.norm_mlp(x))


class MemoryAttention(nn.Module):
    """N layers of self-attention over the frame and cross-attention to the bank."""

    def __init__(self, config: EdgeTAMConfig) -> None:
        super().__init__()
        self.layers = nn.ModuleList(MemoryAttentionLayer(config) for _ in range(config.attention_layers))
        self.norm_memory = nn.LayerNorm(config.memory_dim)
        self.norm = nn.LayerNorm(config.dim)
        size = config.feature_size
        self.register_buffer("positions", grid_encoding(size, size, config.dim)[None], persistent=False)
        self.register_buffer("coordinates", grid_centres(size, size), persistent=False)

    def forward(
        self, features: Tensor, memory: Tensor, memory_positions: Tensor, memory_coordinates: Tensor, bias: Tensor
    ) -> Tensor:
        batch, channels, height, width = features.shape
        x = features.flatten(2).transpose(1, 2)
        memory = self.norm_memory(memory)  # keeps the bank from swamping the frame's own features
        memory_keys = memory + memory_positions
        offsets = (self.coordinates[:, None, :] - memory_coordinates[None, :, :]) * height
        distances = torch.nan_to_num(offsets.square().sum(dim=2), nan=0.0)  # placeless tokens: no penalty
        bias = bias.view(1, 1, 1, -1)
        for layer in self.layers:
            x = layer(x, self.positions, memory, memory_keys, bias, distances)
        return self.norm(x).transpose(1, 2).reshape(batch, channels, height, width)


class MaskDecoder(nn.Module):
    """A SAM-style two-way decoder with a mask token and an object-score token, upsampling to stride 2."""

    def __init__(self, config: EdgeTAMConfig) -> None:
        super().__init__()
        dim = config.dim
        self.tokens = nn.Parameter(torch.randn(2, dim) * 0.02)  # mask token, object-score token
        self.token_self = Attention(dim, config.heads)
        self.token_to_image = Attention(dim, config.heads)
        self.image_to_token = Attention(dim, config.heads)
        self.norms = nn.ModuleList(nn.LayerNorm(dim) for _ in range(4))
        self.token_mlp = MLP(dim)
        self.up1 = nn.ConvTranspose2d(dim, dim // 4, 2, stride=2)
        self.up2 = nn.ConvTranspose2d(dim // 4, dim // 8, 2, stride=2)
        self.hypernetwork = MLP(dim, dim // 8)
        self.score_head = MLP(dim, 1)
        size = config.feature_size
        self.register_buffer("positions", grid_encoding(size, size, dim)[None], persistent=False)

    def forward(self, features: Tensor, high_res: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Mask logits at stride 2 ``[B, 1, R/2, R/2]``, object scores ``[B]`` and the mask token ``[B, dim]``."""
        batch, dim, height, width = features.shape
        image = features.flatten(2).transpose(1, 2)
        tokens = self.tokens.expand(batch, -1, -1)
        tokens = self.norms[0](tokens + self.token_self(tokens, tokens, tokens))
        keys = image + self.positions
        tokens = self.norms[1](tokens + self.token_to_image(tokens, keys, image))
        tokens = self.norms[2](tokens + self.token_mlp(tokens))
        image = self.norms[3](image + self.image_to_token(keys, tokens, tokens))
        image = image.transpose(1, 2).reshape(batch, dim, height, width)
        upscaled = self.up2(F.gelu(self.up1(image) + high_res))
        weights = self.hypernetwork(tokens[:, 0])
        logits = torch.einsum("bc,bchw->bhw", weights, upscaled)[:, None]
        return logits, self.score_head(tokens[:, 1]).squeeze(1), tokens[:, 0]


# ----------------------------------------------------------------------------- the tracker


@dataclass
class TrackOutput:
    """Mask logits ``[T, K, R, R]`` at the model resolution and object-presence scores ``[T, K]``."""

    logits: Tensor
    object_scores: Tensor


class EdgeTAM(nn.Module):
    def __init__(self, config: EdgeTAMConfig) -> None:
        super().__init__()
        problems = config.problems()
        if problems:
            raise ValueError("; ".join(problems))
        self.config = config
        self.image_encoder = ImageEncoder(config)
        self.memory_encoder = MemoryEncoder(config)
        self.memory_attention = MemoryAttention(config)
        self.mask_decoder = MaskDecoder(config)
        # Slot 0: the prompted frame; slot i: the frame i steps back.
        self.temporal = nn.Parameter(torch.zeros(config.memory_frames + 1, config.memory_dim))
        self.register_buffer("pixel_mean", torch.tensor(PIXEL_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(PIXEL_STD).view(1, 3, 1, 1), persistent=False)

    def preprocess(self, frames: Tensor) -> Tensor:
        """uint8 ``[T, H, W, 3]`` frames to normalised ``[T, 3, R, R]`` at the model's resolution."""
        x = frames.permute(0, 3, 1, 2).float() / 255.0
        size = self.config.resolution
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        return (x - self.pixel_mean) / self.pixel_std

    def encode_image(self, frames: Tensor) -> tuple[Tensor, Tensor]:
        return self.image_encoder(frames)

    def encode_memory(self, features: Tensor, mask_probabilities: Tensor, pointer: Tensor | None) -> MemoryEntry:
        return self.memory_encoder(features, mask_probabilities, pointer)

    def attend_memory(self, features: Tensor, bank: list[tuple[int, MemoryEntry]]) -> Tensor:
        """Condition ``features`` on ``(slot, entry)`` pairs of the bank."""
        memory = torch.cat([entry.tokens for _, entry in bank], dim=1)
        positions = torch.cat([entry.positions + self.temporal[slot] for slot, entry in bank], dim=1)
        coordinates = torch.cat([entry.coordinates for _, entry in bank])
        bias = torch.cat([entry.score_bias for _, entry in bank])
        return self.memory_attention(features, memory, positions, coordinates, bias)

    def decode(self, features: Tensor, high_res: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        logits, scores, pointer = self.mask_decoder(features, high_res)
        size = self.config.resolution
        logits = F.interpolate(logits, size=(size, size), mode="bilinear", align_corners=False)
        return logits, scores, pointer

    def track(self, frames: Tensor, prompt_masks: Tensor) -> TrackOutput:
        """Follow ``K`` objects given by their first-frame masks ``[K, R, R]`` through ``[T, 3, R, R]`` frames."""
        n_objects = prompt_masks.shape[0]
        features, high_res = self.encode_image(frames)
        prompt = prompt_masks.float()[:, None]
        prompt_entry = self.encode_memory(features[:1].expand(n_objects, -1, -1, -1), prompt, None)
        recent: deque[MemoryEntry] = deque(maxlen=self.config.memory_frames)
        logits = [(prompt * 2 - 1) * PROMPT_LOGIT]
        scores = [torch.full((n_objects,), PROMPT_LOGIT)]
        for t in range(1, frames.shape[0]):
            frame_features = features[t : t + 1].expand(n_objects, -1, -1, -1)
            bank = [(0, prompt_entry)] + [(slot, entry) for slot, entry in enumerate(reversed(recent), start=1)]
            conditioned = self.attend_memory(frame_features, bank)
            frame_logits, frame_scores, pointer = self.decode(
                conditioned, high_res[t : t + 1].expand(n_objects, -1, -1, -1)
            )
            present = (frame_scores > 0).float().view(-1, 1, 1, 1)
            stored_mask = torch.sigmoid(frame_logits).detach() * present  # an absent object leaves an empty memory
            recent.append(self.encode_memory(frame_features, stored_mask, pointer))
            logits.append(frame_logits)
            scores.append(frame_scores)
        return TrackOutput(torch.cat(logits, dim=1).transpose(0, 1).contiguous(), torch.stack(scores))

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.parameters())
