"""Training, weight inheritance, distillation and J&F evaluation of EdgeTAM models on DAVIS-layout videos.

Training follows SAM 2's recipe in miniature: a random clip, every object visible in its first frame
prompted by its mask there, the model's own predictions fed back into its memory, and a loss on every
later frame (BCE plus Dice on masks where the object is present, BCE on object presence).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from evaluators.vos.davis import VideoSequence, write_masks
from evaluators.vos.jf import JFResult, evaluate_semi_supervised
from hilnas.errors import UserError
from search.families.edgetam.model import EdgeTAM

ProgressCallback = Callable[[int, float], None]


@dataclass(frozen=True)
class TrainingBudget:
    steps: int
    clip_frames: int = 4
    learning_rate: float = 2e-3
    max_objects: int = 3
    seed: int = 0


@dataclass
class Clip:
    frames: Tensor  # uint8 [L, H, W, 3]
    masks: Tensor  # bool [K, L, H, W]


def sample_clip(rng: np.random.Generator, videos: list[VideoSequence], frames: int, max_objects: int) -> Clip:
    """A random clip and the objects visible in its first frame (at most ``max_objects``)."""
    while True:
        video = videos[int(rng.integers(len(videos)))]
        length = min(frames, len(video.frame_names))
        start = int(rng.integers(len(video.frame_names) - length + 1))
        labels = video.labels[start : start + length]
        present = [i for i in video.object_ids if (labels[0] == i).any()]
        if present:
            chosen = sorted(rng.choice(present, size=min(max_objects, len(present)), replace=False).tolist())
            masks = np.stack([labels == i for i in chosen])
            return Clip(torch.from_numpy(video.frames[start : start + length]), torch.from_numpy(masks))


def resize_masks(masks: Tensor, size: int) -> Tensor:
    """Boolean ``[..., H, W]`` masks as soft ``[..., size, size]`` coverage in [0, 1]."""
    leading = masks.shape[:-2]
    flat = masks.reshape(-1, 1, *masks.shape[-2:]).float()
    resized = F.interpolate(flat, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return resized.reshape(*leading, size, size)


def segmentation_loss(logits: Tensor, scores: Tensor, targets: Tensor) -> Tensor:
    """Loss on frames 1.. of ``[T, K, R, R]`` logits against soft targets; frame 0 is the prompt."""
    logits, scores, targets = logits[1:], scores[1:], targets[1:]
    present = (targets.flatten(2).amax(dim=2) > 0.5).float()
    bce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none").mean(dim=(2, 3))
    probabilities = torch.sigmoid(logits)
    overlap = (probabilities * targets).sum(dim=(2, 3))
    dice = 1 - (2 * overlap + 1) / (probabilities.sum(dim=(2, 3)) + targets.sum(dim=(2, 3)) + 1)
    mask_loss = ((bce + dice) * present).sum() / present.sum().clamp(min=1)
    return mask_loss + F.binary_cross_entropy_with_logits(scores, present)


def distillation_loss(logits: Tensor, scores: Tensor, teacher_logits: Tensor, teacher_scores: Tensor) -> Tensor:
    """Match the teacher's soft masks and presence on frames 1.. (teacher logits resized to the student's)."""
    size = logits.shape[-1]
    if teacher_logits.shape[-1] != size:
        teacher_logits = F.interpolate(teacher_logits[1:], size=(size, size), mode="bilinear", align_corners=False)
    else:
        teacher_logits = teacher_logits[1:]
    masks = F.binary_cross_entropy_with_logits(logits[1:], torch.sigmoid(teacher_logits))
    presence = F.binary_cross_entropy_with_logits(scores[1:], torch.sigmoid(teacher_scores[1:]))
    return masks + presence


def train(
    model: EdgeTAM,
    videos: list[VideoSequence],
    budget: TrainingBudget,
    teacher: EdgeTAM | None = None,
    distill_weight: float = 1.0,
    on_step: ProgressCallback | None = None,
) -> float:
    """Train in place for ``budget.steps`` clips, with distillation when a teacher is given; returns the last loss."""
    torch.manual_seed(budget.seed)
    rng = np.random.default_rng(budget.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=budget.learning_rate, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=budget.learning_rate, total_steps=max(budget.steps, 1), pct_start=0.1
    )
    if teacher is not None:
        teacher.eval()
    model.train()
    loss_value = float("nan")
    for step in range(budget.steps):
        clip = sample_clip(rng, videos, budget.clip_frames, budget.max_objects)
        output = model.track(
            model.preprocess(clip.frames), resize_masks(clip.masks[:, 0], model.config.resolution) > 0.5
        )
        targets = resize_masks(clip.masks, model.config.resolution).transpose(0, 1)
        loss = segmentation_loss(output.logits, output.object_scores, targets)
        if teacher is not None:
            with torch.no_grad():
                taught = teacher.track(
                    teacher.preprocess(clip.frames), resize_masks(clip.masks[:, 0], teacher.config.resolution) > 0.5
                )
            loss = loss + distill_weight * distillation_loss(
                output.logits, output.object_scores, taught.logits, taught.object_scores
            )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        loss_value = float(loss.detach())
        if on_step is not None:
            on_step(step, loss_value)
    model.eval()
    return loss_value


def inherit_weights(student: EdgeTAM, teacher_state: dict[str, Tensor]) -> tuple[int, int]:
    """Copy what fits from the teacher: same-named tensors, cut to the student's leading slice.

    A narrower encoder keeps the teacher's first channels, a shallower one its first blocks, fewer
    attention layers the first layers, a shorter bank the first temporal slots (as MobileLLM-Flash prunes
    a backbone). Tensors without a counterpart (the perceiver's) keep their fresh initialisation.
    Returns (tensors inherited, tensors in the student).
    """
    state = student.state_dict()
    inherited = 0
    for name, tensor in state.items():
        source = teacher_state.get(name)
        if source is None or source.dim() != tensor.dim():
            continue
        if any(have < need for have, need in zip(source.shape, tensor.shape, strict=True)):
            continue
        tensor.copy_(source[tuple(slice(0, size) for size in tensor.shape)])
        inherited += 1
    student.load_state_dict(state)
    return inherited, len(state)


@torch.inference_mode()
def predict_labels(model: EdgeTAM, video: VideoSequence) -> np.ndarray:
    """Label maps ``[T, H, W]`` at the video's size: each pixel goes to the most confident present object."""
    model.eval()
    object_ids = video.object_ids
    first = torch.from_numpy(np.stack([video.labels[0] == i for i in object_ids]))
    output = model.track(
        model.preprocess(torch.from_numpy(video.frames)), resize_masks(first, model.config.resolution) > 0.5
    )
    height, width = video.labels.shape[1:]
    logits = F.interpolate(output.logits, size=(height, width), mode="bilinear", align_corners=False)
    absent = (output.object_scores <= 0)[:, :, None, None]
    logits = logits.masked_fill(absent, float("-inf"))
    best, index = logits.max(dim=1)
    labels = torch.tensor(object_ids, dtype=torch.uint8)[index]
    labels[best <= 0] = 0
    result = labels.numpy()
    result[0] = np.where(video.labels[0] == 255, 0, video.labels[0])  # the prompt frame is given
    return result


def evaluate_jf(model: EdgeTAM, videos: list[VideoSequence]) -> JFResult:
    """DAVIS 2017 semi-supervised J&F of ``model`` on ``videos`` (every frame must have ground truth)."""
    for video in videos:
        if not video.fully_annotated:
            raise UserError(
                f"Sequence {video.name!r} is annotated only on its first frame (a DAVIS test-dev layout), so its "
                "J&F cannot be computed; write its predicted masks with `hilnas edgetam predict` instead."
            )
    return evaluate_semi_supervised({video.name: (video.labels, predict_labels(model, video)) for video in videos})


def write_predictions(model: EdgeTAM, videos: list[VideoSequence], out: str | Path) -> list[Path]:
    """Track every video from its first-frame mask and write ``<out>/<sequence>/<frame>.png`` palette PNGs,
    the layout the DAVIS evaluation server takes for test-dev; returns the sequence folders."""
    folders = []
    for video in videos:
        folder = Path(out) / video.name
        write_masks(folder, predict_labels(model, video), video.frame_names)
        folders.append(folder)
    return folders
