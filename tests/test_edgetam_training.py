"""Training, inheritance from the teacher, and J&F prediction of EdgeTAM models on tiny synthetic videos."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from evaluators.vos.synthetic import SyntheticConfig, generate_davis
from search.families.edgetam.model import EdgeTAM, EdgeTAMConfig
from search.families.edgetam.training import (
    TrainingBudget,
    evaluate_jf,
    inherit_weights,
    predict_labels,
    resize_masks,
    segmentation_loss,
    train,
)

torch.set_num_threads(1)
TINY = dict(resolution=32, encoder_width=16, encoder_depth=1, dim=32, memory_dim=16, memory_frames=2)


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    root = tmp_path_factory.mktemp("davis")
    dataset = generate_davis(root, SyntheticConfig(train_videos=1, val_videos=1, frames=4, height=32, width=48))
    return dataset.load_split("train"), dataset.load_split("val")


def test_inheritance_keeps_the_teachers_leading_slices() -> None:
    torch.manual_seed(0)
    teacher = EdgeTAM(EdgeTAMConfig(**{**TINY, "encoder_width": 32, "encoder_depth": 3, "memory_frames": 4}))
    student = EdgeTAM(EdgeTAMConfig(**{**TINY, "memory": "perceiver", "patch_latents": 4, "global_latents": 2}))
    inherited, total = inherit_weights(student, teacher.state_dict())
    teacher_state, student_state = teacher.state_dict(), student.state_dict()
    stem = "image_encoder.stem.0.0.weight"
    assert torch.equal(student_state[stem], teacher_state[stem][:8])  # first 8 of 16 channels
    block = "image_encoder.blocks.0.depthwise.weight"
    assert torch.equal(student_state[block], teacher_state[block][:16])
    assert torch.equal(student_state["temporal"], teacher_state["temporal"][:3])  # first bank slots
    layer = "memory_attention.layers.0.cross_attention.q.weight"
    assert torch.equal(student_state[layer], teacher_state[layer])
    perceiver = [name for name in student_state if ".perceiver." in name]
    assert perceiver and all(name not in teacher_state for name in perceiver)  # fresh, nothing to inherit
    assert inherited == total - len(perceiver)


def test_loss_ignores_the_prompt_frame_and_masks_of_absent_objects() -> None:
    targets = torch.zeros(3, 1, 8, 8)
    targets[1, 0, 2:5, 2:5] = 1.0
    perfect = (targets * 2 - 1) * 20
    scores = torch.tensor([[20.0], [20.0], [-20.0]])
    wrong_prompt = perfect.clone()
    wrong_prompt[0] = 20.0  # frame 0 is never scored
    assert segmentation_loss(perfect, scores, targets) < 1e-3
    assert segmentation_loss(wrong_prompt, scores, targets) == pytest.approx(
        float(segmentation_loss(perfect, scores, targets))
    )
    assert segmentation_loss(perfect, -scores, targets) > 1.0


def test_training_fits_a_single_clip(videos) -> None:  # noqa: ANN001
    train_videos, _ = videos
    train_videos = [train_videos[0]]
    torch.manual_seed(0)
    model = EdgeTAM(EdgeTAMConfig(**TINY))
    clip_losses: list[float] = []
    train(
        model,
        train_videos,
        TrainingBudget(steps=40, clip_frames=4, learning_rate=3e-3),
        on_step=lambda _, loss: clip_losses.append(loss),
    )
    assert np.mean(clip_losses[-10:]) < 0.6 * np.mean(clip_losses[:10])


def test_predicted_labels_have_the_video_size_and_the_prompt_frame(videos) -> None:  # noqa: ANN001
    _, val_videos = videos
    video = val_videos[0]
    torch.manual_seed(0)
    labels = predict_labels(EdgeTAM(EdgeTAMConfig(**TINY)), video)
    assert labels.shape == video.labels.shape and labels.dtype == np.uint8
    assert np.array_equal(labels[0], video.labels[0])
    assert set(np.unique(labels)) <= {0, *video.object_ids}
    result = evaluate_jf(EdgeTAM(EdgeTAMConfig(**TINY)), val_videos)
    assert 0.0 <= result.jf <= 1.0 and len(result.sequences) == 1


def test_resize_masks_keeps_coverage() -> None:
    masks = torch.zeros(2, 3, 16, 16, dtype=torch.bool)
    masks[0, 1, :8] = True
    resized = resize_masks(masks, 8)
    assert resized.shape == (2, 3, 8, 8)
    assert resized[0, 1].mean() == pytest.approx(0.5)
