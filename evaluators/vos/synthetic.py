"""Deterministic synthetic videos written in the DAVIS 2017 layout: the embedded default VOS data.

Each video has several textured objects moving, scaling and rotating over a textured, slowly panning
background. Objects are drawn back to front, so they occlude each other; one unannotated distractor
has the same shape and texture as object 1; one annotated object leaves the frame and comes back.
The same configuration always gives the same files (the random generator is seeded per video).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from evaluators.vos.davis import DavisDataset, VideoSequence, write_sequence, write_split

MIN_FIRST_FRAME_PIXELS = 12
GENERATOR_VERSION = 3  # part of the cache key: bump when the rendering changes
_COMPLETE_MARKER = ".complete"


@dataclass(frozen=True)
class SyntheticConfig:
    """Size of the generated dataset; small defaults so that training fits a shared 2-core CPU."""

    train_videos: int = 16
    val_videos: int = 6
    frames: int = 10
    height: int = 64
    width: int = 96
    min_objects: int = 2
    max_objects: int = 3
    seed: int = 0

    def key(self) -> str:
        identity = asdict(self) | {"generator_version": GENERATOR_VERSION}
        return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:12]


@dataclass
class _Sprite:
    """A textured polygon with a trajectory; ``label`` 0 marks the unannotated distractor."""

    label: int
    radii: np.ndarray  # polygon radius per vertex angle, in pixels at scale 1
    colors: np.ndarray  # two RGB colours of the stripe texture
    stripe_frequency: float
    stripe_angle: float
    centers: np.ndarray  # [T, 2] (x, y)
    scales: np.ndarray  # [T]
    angles: np.ndarray  # [T] radians


def _blob_radii(rng: np.random.Generator, size: float) -> np.ndarray:
    vertices = int(rng.integers(5, 9))
    return size * rng.uniform(0.6, 1.0, vertices)


def _linear_path(rng: np.random.Generator, config: SyntheticConfig, margin: float) -> np.ndarray:
    """A straight path that bounces off the frame edges, so the sprite stays mostly in view."""
    start = rng.uniform([margin, margin], [config.width - margin, config.height - margin])
    velocity = rng.uniform(-1.0, 1.0, 2) * min(config.width, config.height) * 0.05
    low, high = np.array([margin, margin]), np.array([config.width - margin, config.height - margin])
    position, centers = start.copy(), []
    for _ in range(config.frames):
        centers.append(position.copy())
        position += velocity
        bounced = (position < low) | (position > high)
        velocity[bounced] *= -1
        position = np.clip(position, low, high)
    return np.array(centers)


def _exit_and_return_path(rng: np.random.Generator, config: SyntheticConfig, size: float) -> np.ndarray:
    """A path that starts in view, leaves through the right edge at constant speed mid-video and comes back."""
    x0 = rng.uniform(0.55, 0.75) * config.width
    reach = config.width + 1.6 * size - x0  # the polygon's radius is at most 1.3 * size
    # A tent profile, flattened at the top so that the middle frame(s) are out of view for any frame count.
    xs = x0 + reach * np.minimum(1.0, 1.25 * (1 - np.abs(np.linspace(-1.0, 1.0, config.frames))))
    ys = np.full(config.frames, rng.uniform(0.3, 0.7) * config.height)
    return np.stack([xs, ys], axis=1)


def _make_sprite(
    rng: np.random.Generator, config: SyntheticConfig, label: int, exits: bool, like: _Sprite | None = None
) -> _Sprite:
    size = min(config.width, config.height) * rng.uniform(0.12, 0.2)
    radii = like.radii.copy() if like is not None else _blob_radii(rng, size)
    colors = like.colors.copy() if like is not None else rng.integers(20, 236, (2, 3)).astype(float)
    frequency = like.stripe_frequency if like is not None else rng.uniform(0.4, 1.2)
    stripe_angle = like.stripe_angle if like is not None else rng.uniform(0, math.pi)
    centers = _exit_and_return_path(rng, config, size) if exits else _linear_path(rng, config, size)
    t = np.arange(config.frames)
    scales = 1.0 + rng.uniform(-0.3, 0.3) * t / max(config.frames - 1, 1)
    angles = rng.uniform(0, 2 * math.pi) + rng.uniform(-0.15, 0.15) * t
    return _Sprite(label, radii, colors, frequency, stripe_angle, centers, scales, angles)


def _background(rng: np.random.Generator, config: SyntheticConfig) -> np.ndarray:
    """Frames ``[T, H, W, 3]`` of a sum of coloured sinusoids panning with a constant camera drift."""
    ys, xs = np.mgrid[0 : config.height, 0 : config.width].astype(float)
    drift = rng.uniform(-1.0, 1.0, 2)
    waves = [(rng.uniform(0.05, 0.4, 2) * rng.choice([-1, 1], 2), rng.uniform(0, 2 * math.pi)) for _ in range(3)]
    tints = rng.uniform(-60, 60, (3, 3))
    base = rng.uniform(70, 190, 3)
    frames = []
    for t in range(config.frames):
        x, y = xs + drift[0] * t, ys + drift[1] * t
        image = np.broadcast_to(base, (config.height, config.width, 3)).copy()
        for (frequency, phase), tint in zip(waves, tints, strict=True):
            image += np.sin(frequency[0] * x + frequency[1] * y + phase)[..., None] * tint
        frames.append(image)
    return np.stack(frames)


def _render(sprite: _Sprite, t: int, config: SyntheticConfig) -> tuple[np.ndarray, np.ndarray]:
    """The sprite's mask ``[H, W]`` and texture ``[H, W, 3]`` at frame ``t``."""
    cx, cy = sprite.centers[t]
    scale, angle = sprite.scales[t], sprite.angles[t]
    vertex_angles = np.linspace(0, 2 * math.pi, len(sprite.radii), endpoint=False) + angle
    points = [
        (cx + scale * r * math.cos(a), cy + scale * r * math.sin(a))
        for r, a in zip(sprite.radii, vertex_angles, strict=True)
    ]
    canvas = Image.new("L", (config.width, config.height), 0)
    ImageDraw.Draw(canvas).polygon(points, fill=1)
    mask = np.asarray(canvas).astype(bool)
    # Stripes live in the sprite's own frame, so they turn and stretch with it.
    ys, xs = np.mgrid[0 : config.height, 0 : config.width].astype(float)
    u = ((xs - cx) * math.cos(angle) + (ys - cy) * math.sin(angle)) / scale
    v = (-(xs - cx) * math.sin(angle) + (ys - cy) * math.cos(angle)) / scale
    along = u * math.cos(sprite.stripe_angle) + v * math.sin(sprite.stripe_angle)
    stripe = (np.sin(sprite.stripe_frequency * along) > 0)[..., None]
    texture = np.where(stripe, sprite.colors[0], sprite.colors[1])
    return mask, texture


def render_video(name: str, config: SyntheticConfig, index: int) -> VideoSequence:
    """One deterministic video; redrawn (with the next seed) until every object is visible in frame 0."""
    attempt = 0
    while True:
        rng = np.random.default_rng([config.seed, index, attempt])
        video = _try_render(name, config, rng)
        counts = [np.count_nonzero(video.labels[0] == i) for i in range(1, int(video.labels.max()) + 1)]
        if counts and min(counts) >= MIN_FIRST_FRAME_PIXELS and len(counts) >= config.min_objects:
            return video
        attempt += 1


def _try_render(name: str, config: SyntheticConfig, rng: np.random.Generator) -> VideoSequence:
    n_objects = int(rng.integers(config.min_objects, config.max_objects + 1))
    sprites = [_make_sprite(rng, config, label, exits=label == n_objects) for label in range(1, n_objects + 1)]
    sprites.append(_make_sprite(rng, config, 0, exits=False, like=sprites[0]))  # the same-looking distractor
    order = rng.permutation(len(sprites))  # back to front
    frames = _background(rng, config)
    labels = np.zeros((config.frames, config.height, config.width), dtype=np.uint8)
    for t in range(config.frames):
        for position in order:
            mask, texture = _render(sprites[position], t, config)
            frames[t][mask] = texture[mask]
            labels[t][mask] = sprites[position].label
    frames += rng.normal(0, 4, frames.shape)
    frames = np.clip(frames, 0, 255).astype(np.uint8)
    return VideoSequence(name, frames, labels, [f"{t:05d}" for t in range(config.frames)])


def generate_davis(root: str | Path, config: SyntheticConfig) -> DavisDataset:
    """Write the ``train`` and ``val`` splits of ``config`` under ``root`` and return the dataset."""
    root = Path(root)
    for split, count, offset in (("train", config.train_videos, 0), ("val", config.val_videos, 100_000)):
        names = [f"synth-{split}-{i:03d}" for i in range(count)]
        for i, name in enumerate(names):
            write_sequence(root, render_video(name, config, offset + i))
        write_split(root, split, names)
    return DavisDataset(root)


def cached_synthetic_davis(cache_dir: str | Path, config: SyntheticConfig) -> DavisDataset:
    """The dataset of ``config`` under ``cache_dir``, generated once; concurrent callers never see half a folder."""
    target = Path(cache_dir) / f"synthetic-davis-{config.key()}"
    if not (target / _COMPLETE_MARKER).exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix=".synthetic-davis-", dir=target.parent))
        generate_davis(scratch, config)
        (scratch / _COMPLETE_MARKER).write_text(json.dumps(asdict(config)))
        try:
            os.rename(scratch, target)
        except OSError:  # another process finished first; its copy is identical
            shutil.rmtree(scratch, ignore_errors=True)
    return DavisDataset(target)
