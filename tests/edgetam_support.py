"""Shared by the EdgeTAM tests: a recipe small enough to train and score in seconds on one shared core."""

from __future__ import annotations

from pathlib import Path


def tiny_recipe(cache: Path) -> dict:
    """Two 4-frame synthetic training videos and one held-out, 32-pixel models, a few training steps."""
    return {
        "synthetic": {"train_videos": 2, "val_videos": 1, "frames": 4, "height": 32, "width": 48},
        "dim": 32,
        "memory_dim": 16,
        "teacher_resolution": 32,
        "teacher_steps": 3,
        "distill_steps": 2,
        "clip_frames": 3,
        "cache_dir": str(cache),
    }
