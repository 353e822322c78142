"""DAVIS 2017 region (J) and boundary (F) measures, as the official semi-supervised evaluation defines them.

J is the intersection over union of a predicted and a ground-truth mask with void pixels left out, and 1
when both masks are empty. F is the F-measure between the two masks' 1-pixel boundary maps, where a
boundary pixel counts as matched when the other map has a boundary pixel within a disk of radius
``ceil(0.008 * image diagonal)``. A sequence is scored without its first frame (the prompt) and its last
frame; each object's per-frame values give a mean, a recall (share of frames above 0.5) and a decay
(mean of the first quarter minus mean of the last quarter), and the dataset figures are means over all
objects of all sequences. Written here rather than taken from a package because the official scorer is
a script, not an installable library; ``scipy.ndimage`` does the dilation.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

VOID_LABEL = 255
BOUNDARY_TOLERANCE = 0.008
DECAY_BINS = 4


def jaccard(prediction: np.ndarray, truth: np.ndarray, void: np.ndarray | None = None) -> float:
    """Intersection over union of two boolean masks, void pixels excluded; 1.0 when both are empty."""
    prediction, truth = prediction.astype(bool), truth.astype(bool)
    if void is not None:
        keep = ~void.astype(bool)
        prediction, truth = prediction & keep, truth & keep
    union = np.count_nonzero(prediction | truth)
    if union == 0:
        return 1.0
    return np.count_nonzero(prediction & truth) / union


def boundary_map(mask: np.ndarray) -> np.ndarray:
    """Pixels whose value differs from their right, lower or lower-right neighbour inside the image.

    This is the 1-pixel boundary of the DAVIS tools: neighbours outside the image are not compared, so a
    mask touching the image border has no boundary along that border.
    """
    mask = mask.astype(bool)
    boundary = np.zeros_like(mask)
    boundary[:, :-1] |= mask[:, :-1] != mask[:, 1:]
    boundary[:-1, :] |= mask[:-1, :] != mask[1:, :]
    boundary[:-1, :-1] |= mask[:-1, :-1] != mask[1:, 1:]
    return boundary


def tolerance_radius(shape: tuple[int, int], tolerance: float = BOUNDARY_TOLERANCE) -> int:
    """Disk radius in pixels: a fraction of the image diagonal rounded up, or ``tolerance`` itself when >= 1."""
    if tolerance >= 1:
        return int(tolerance)
    return math.ceil(tolerance * math.hypot(*shape))


def _disk(radius: int) -> np.ndarray:
    offsets = np.arange(-radius, radius + 1)
    return offsets[:, None] ** 2 + offsets[None, :] ** 2 <= radius**2


def boundary_f(
    prediction: np.ndarray,
    truth: np.ndarray,
    void: np.ndarray | None = None,
    tolerance: float = BOUNDARY_TOLERANCE,
) -> float:
    """Boundary F-measure of two boolean masks with the DAVIS disk tolerance; void pixels are cleared first."""
    prediction, truth = prediction.astype(bool), truth.astype(bool)
    if void is not None:
        keep = ~void.astype(bool)
        prediction, truth = prediction & keep, truth & keep
    predicted_boundary, true_boundary = boundary_map(prediction), boundary_map(truth)
    n_predicted, n_true = np.count_nonzero(predicted_boundary), np.count_nonzero(true_boundary)
    if n_predicted == 0 or n_true == 0:
        # No boundary on one side: precision/recall are 1 for the empty side and 0 for the other.
        return 1.0 if n_predicted == n_true else 0.0
    disk = _disk(tolerance_radius(truth.shape, tolerance))
    near_true = ndimage.binary_dilation(true_boundary, structure=disk)
    near_predicted = ndimage.binary_dilation(predicted_boundary, structure=disk)
    precision = np.count_nonzero(predicted_boundary & near_true) / n_predicted
    recall = np.count_nonzero(true_boundary & near_predicted) / n_true
    if precision + recall == 0:
        return 0.0
    return 2 * precision * recall / (precision + recall)


@dataclass(frozen=True)
class Statistics:
    """Mean, recall (share of frames above 0.5) and decay of one object's per-frame values."""

    mean: float
    recall: float
    decay: float


def frame_statistics(values: np.ndarray) -> Statistics:
    """The DAVIS statistics; decay splits the frames into four bins whose edge frames belong to both sides."""
    values = np.asarray(values, dtype=float)
    if values.size == 0:
        raise ValueError("cannot score an object over zero frames")
    edges = np.floor(np.linspace(0, len(values) - 1, DECAY_BINS + 1) + 0.5).astype(int)
    first = values[edges[0] : edges[1] + 1]
    last = values[edges[DECAY_BINS - 1] : edges[DECAY_BINS] + 1]
    return Statistics(float(values.mean()), float(np.mean(values > 0.5)), float(first.mean() - last.mean()))


@dataclass
class SequenceScore:
    """Per-object J and F values over the scored frames of one sequence."""

    name: str
    j_per_frame: dict[int, np.ndarray]
    f_per_frame: dict[int, np.ndarray]

    def j(self, object_id: int) -> Statistics:
        return frame_statistics(self.j_per_frame[object_id])

    def f(self, object_id: int) -> Statistics:
        return frame_statistics(self.f_per_frame[object_id])


def object_ids(first_annotation: np.ndarray) -> list[int]:
    """Objects of a sequence: the labels of its first annotated frame other than background and void."""
    labels = np.unique(first_annotation)
    return [int(v) for v in labels if v not in (0, VOID_LABEL)]


def score_sequence(name: str, truth: np.ndarray, prediction: np.ndarray) -> SequenceScore:
    """J and F of every object of a ``[T, H, W]`` label video, skipping the first and last frame.

    ``truth`` uses 0 for background, 1..N for objects and 255 for void; ``prediction`` uses the same ids.
    """
    if truth.shape != prediction.shape:
        raise ValueError(f"sequence {name!r}: prediction shape {prediction.shape} differs from {truth.shape}")
    if truth.shape[0] < 3:
        raise ValueError(f"sequence {name!r} needs at least 3 frames to be scored without its first and last")
    ids = object_ids(truth[0])
    scored = range(1, truth.shape[0] - 1)
    j_values: dict[int, np.ndarray] = {}
    f_values: dict[int, np.ndarray] = {}
    for object_id in ids:
        j_frames, f_frames = [], []
        for t in scored:
            void = truth[t] == VOID_LABEL
            mine, theirs = prediction[t] == object_id, truth[t] == object_id
            j_frames.append(jaccard(mine, theirs, void))
            f_frames.append(boundary_f(mine, theirs, void))
        j_values[object_id], f_values[object_id] = np.array(j_frames), np.array(f_frames)
    return SequenceScore(name, j_values, f_values)


@dataclass
class JFResult:
    """Dataset-level DAVIS figures: means over all objects of all sequences."""

    j: Statistics
    f: Statistics
    sequences: list[SequenceScore] = field(default_factory=list)

    @property
    def jf(self) -> float:
        return (self.j.mean + self.f.mean) / 2

    def as_metrics(self) -> dict[str, float]:
        return {
            "jf": self.jf,
            "j_mean": self.j.mean,
            "j_recall": self.j.recall,
            "j_decay": self.j.decay,
            "f_mean": self.f.mean,
            "f_recall": self.f.recall,
            "f_decay": self.f.decay,
        }


def evaluate_semi_supervised(videos: Mapping[str, tuple[np.ndarray, np.ndarray]]) -> JFResult:
    """Score ``{sequence: (truth labels, predicted labels)}`` the way the DAVIS 2017 semi-supervised task does."""
    if not videos:
        raise ValueError("no sequences to evaluate")
    scores = [score_sequence(name, truth, prediction) for name, (truth, prediction) in videos.items()]
    j_stats = [score.j(i) for score in scores for i in score.j_per_frame]
    f_stats = [score.f(i) for score in scores for i in score.f_per_frame]
    if not j_stats:
        raise ValueError("the sequences contain no annotated object in their first frame")
    return JFResult(_average(j_stats), _average(f_stats), scores)


def _average(stats: list[Statistics]) -> Statistics:
    return Statistics(
        float(np.mean([s.mean for s in stats])),
        float(np.mean([s.recall for s in stats])),
        float(np.mean([s.decay for s in stats])),
    )
