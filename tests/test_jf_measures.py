"""J and F on hand-built masks whose answers were worked out by hand (see each test)."""

from __future__ import annotations

import numpy as np
import pytest

from evaluators.vos.jf import (
    boundary_f,
    boundary_map,
    evaluate_semi_supervised,
    frame_statistics,
    jaccard,
    score_sequence,
    tolerance_radius,
)


def _box(shape: tuple[int, int], rows: slice, cols: slice) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    mask[rows, cols] = True
    return mask


def test_jaccard_overlap_void_and_empty_masks() -> None:
    truth = _box((8, 8), slice(0, 4), slice(0, 4))  # 16 px
    prediction = _box((8, 8), slice(2, 6), slice(0, 4))  # 16 px, 8 shared
    assert jaccard(prediction, truth) == pytest.approx(8 / 24)
    # Voiding the 8 predicted-only pixels leaves 8 shared over a union of 16.
    void = _box((8, 8), slice(4, 6), slice(0, 4))
    assert jaccard(prediction, truth, void) == pytest.approx(8 / 16)
    empty = np.zeros((8, 8), dtype=bool)
    assert jaccard(empty, empty) == 1.0
    assert jaccard(empty, truth) == 0.0


def test_boundary_map_marks_pixels_differing_from_right_lower_or_diagonal_neighbour() -> None:
    mask = _box((7, 7), slice(2, 5), slice(2, 5))
    expected = np.zeros((7, 7), dtype=bool)
    expected[1, 1:5] = True  # above the square: lower (or lower-right for column 1) neighbour is inside
    expected[2:4, 1] = expected[2:4, 4] = True  # left of the square and its right column
    expected[4, 1:5] = True  # bottom row of the square and the pixel left of it
    assert np.array_equal(boundary_map(mask), expected)
    assert not boundary_map(np.ones((5, 5), dtype=bool)).any()  # no boundary along the image border


def test_tolerance_radius_is_ceil_of_diagonal_fraction() -> None:
    assert tolerance_radius((480, 854)) == 8  # 0.008 * 979.6 = 7.84
    assert tolerance_radius((64, 64)) == 1
    assert tolerance_radius((500, 500)) == 6  # 0.008 * 707.1 = 5.66
    assert tolerance_radius((10, 10), tolerance=3) == 3


def test_boundary_f_shifts_inside_and_outside_tolerance() -> None:
    shape = (20, 20)  # radius ceil(0.008 * 28.3) = 1
    truth = _box(shape, slice(None), slice(0, 10))  # boundary: column 9
    assert boundary_f(truth, truth) == 1.0
    assert boundary_f(_box(shape, slice(None), slice(0, 11)), truth) == 1.0  # 1 px away: within the disk
    assert boundary_f(_box(shape, slice(None), slice(0, 13)), truth) == 0.0  # 3 px away: nothing matches


def test_boundary_f_partial_match_has_hand_computed_value() -> None:
    shape = (20, 20)
    truth = _box(shape, slice(None), slice(0, 10))
    prediction = truth.copy()
    prediction[10:, 10:14] = True
    # Predicted boundary: column 9 rows 0-9, row 9 columns 10-13, column 13 rows 10-19 (24 px), 11 within 1 px
    # of the truth; 11 of the 20 true boundary pixels are near a predicted one. F = 2PR/(P+R) = 0.5 exactly.
    assert boundary_f(prediction, truth) == pytest.approx(0.5)


def test_boundary_f_empty_cases() -> None:
    empty = np.zeros((10, 10), dtype=bool)
    square = _box((10, 10), slice(2, 5), slice(2, 5))
    assert boundary_f(empty, empty) == 1.0
    assert boundary_f(empty, square) == 0.0
    assert boundary_f(square, empty) == 0.0


def test_frame_statistics_mean_recall_and_decay_bins() -> None:
    values = np.array([1, 1, 1, 0.5, 0.5, 0.5, 0, 0, 0])
    stats = frame_statistics(values)
    assert stats.mean == pytest.approx(0.5)
    assert stats.recall == pytest.approx(3 / 9)  # strictly above 0.5
    # Nine frames: bin edges 0, 2, 4, 6, 8; first bin frames 0-2, last bin frames 6-8.
    assert stats.decay == pytest.approx(1.0)


def test_semi_supervised_drops_first_and_last_frame_and_averages_per_object() -> None:
    shape = (5, 16, 16)
    truth = np.zeros(shape, dtype=np.uint8)
    truth[:, 2:6, 2:6] = 1
    truth[[0, 1, 3, 4], 9:13, 9:13] = 2  # object 2 hidden in frame 2
    truth[:, 0:2, 12:16] = 255  # void
    prediction = truth.copy()
    prediction[prediction == 255] = 0
    prediction[prediction == 2] = 0  # object 2 never found
    prediction[:, 0:2, 12:16] = 1  # extra object-1 pixels, but inside void
    prediction[0] = 0  # the prompt frame and the last frame are not scored
    prediction[4] = 0
    score = score_sequence("toy", truth, prediction)
    assert score.j_per_frame[1].tolist() == [1.0, 1.0, 1.0]
    assert score.j_per_frame[2].tolist() == [0.0, 1.0, 0.0]
    result = evaluate_semi_supervised({"toy": (truth, prediction)})
    assert result.j.mean == pytest.approx((1 + 1 / 3) / 2)
    assert result.f.mean == pytest.approx((1 + 1 / 3) / 2)
    assert result.jf == pytest.approx(2 / 3)
    assert result.j.recall == pytest.approx((1 + 1 / 3) / 2)


def test_score_sequence_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="toy"):
        score_sequence("toy", np.zeros((4, 8, 8), np.uint8), np.zeros((4, 8, 9), np.uint8))
