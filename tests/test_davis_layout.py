"""The DAVIS 2017 reader and the synthetic generator that writes the same layout."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from evaluators.vos.davis import DavisDataset, VideoSequence, write_sequence, write_split
from evaluators.vos.synthetic import SyntheticConfig, cached_synthetic_davis, generate_davis
from hilnas.errors import UserError

SMALL = SyntheticConfig(train_videos=2, val_videos=1, frames=6, height=32, width=48)


def _tree_digest(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def test_generator_writes_davis_layout_that_reads_back(tmp_path: Path) -> None:
    dataset = generate_davis(tmp_path, SMALL)
    assert dataset.split("train") == ["synth-train-000", "synth-train-001"]
    assert dataset.split("val") == ["synth-val-000"]
    png = Image.open(tmp_path / "Annotations/480p/synth-train-000/00000.png")
    assert png.mode == "P"
    assert (tmp_path / "JPEGImages/480p/synth-train-000/00005.jpg").is_file()
    video = dataset.load("synth-train-000")
    assert video.frames.shape == (6, 32, 48, 3) and video.labels.shape == (6, 32, 48)
    assert len(video.object_ids) >= SMALL.min_objects


def test_generator_is_deterministic_and_has_exiting_object_and_distractor(tmp_path: Path) -> None:
    generate_davis(tmp_path / "a", SMALL)
    generate_davis(tmp_path / "b", SMALL)
    assert _tree_digest(tmp_path / "a") == _tree_digest(tmp_path / "b")
    video = DavisDataset(tmp_path / "a").load("synth-train-000")
    last_id = max(video.object_ids)
    visible = [(labels == last_id).any() for labels in video.labels]
    assert visible[0] and visible[-1] and not all(visible)  # leaves the frame and comes back


def test_round_trip_keeps_labels_exactly(tmp_path: Path) -> None:
    labels = np.zeros((3, 10, 12), dtype=np.uint8)
    labels[:, 2:5, 3:7] = 1
    labels[:, 6:9, 1:4] = 2
    labels[1, 0, :] = 255
    frames = np.full((3, 10, 12, 3), 128, dtype=np.uint8)
    write_sequence(tmp_path, VideoSequence("toy", frames, labels, ["00000", "00001", "00002"]))
    write_split(tmp_path, "val", ["toy"])
    video = DavisDataset(tmp_path).load_split("val")[0]
    assert np.array_equal(video.labels, labels)
    assert video.object_ids == [1, 2]


def _write_toy(root: Path, labels: np.ndarray, names: list[str] | None = None) -> None:
    count = labels.shape[0]
    frames = np.zeros((*labels.shape, 3), dtype=np.uint8)
    write_sequence(root, VideoSequence("toy", frames, labels, names or [f"{t:05d}" for t in range(count)]))


def test_missing_frame_names_sequence_and_frame(tmp_path: Path) -> None:
    labels = np.ones((3, 8, 8), dtype=np.uint8)
    _write_toy(tmp_path, labels, ["00000", "00001", "00003"])
    with pytest.raises(UserError, match="Sequence 'toy' is missing frame 00002"):
        DavisDataset(tmp_path).load("toy")


def test_missing_annotation_names_frame(tmp_path: Path) -> None:
    _write_toy(tmp_path, np.ones((3, 8, 8), dtype=np.uint8))
    (tmp_path / "Annotations/480p/toy/00001.png").unlink()
    with pytest.raises(UserError, match="Sequence 'toy' frame 00001 has no annotation"):
        DavisDataset(tmp_path).load("toy")


def test_mask_of_wrong_size_names_frame(tmp_path: Path) -> None:
    _write_toy(tmp_path, np.ones((3, 8, 8), dtype=np.uint8))
    Image.fromarray(np.ones((8, 9), dtype=np.uint8)).convert("P").save(tmp_path / "Annotations/480p/toy/00002.png")
    with pytest.raises(UserError, match="Sequence 'toy' frame 00002: mask is 9x8 but the image is 8x8"):
        DavisDataset(tmp_path).load("toy")


def test_object_absent_from_first_frame_names_frame(tmp_path: Path) -> None:
    labels = np.ones((3, 8, 8), dtype=np.uint8)
    labels[2, :2, :2] = 3
    _write_toy(tmp_path, labels)
    with pytest.raises(UserError, match="Sequence 'toy' frame 00002 contains object id 3, which is absent"):
        DavisDataset(tmp_path).load("toy")


def test_not_a_davis_folder_and_unknown_split(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no JPEGImages/480p"):
        DavisDataset(tmp_path)
    _write_toy(tmp_path, np.ones((3, 8, 8), dtype=np.uint8))
    write_split(tmp_path, "val", ["toy"])
    with pytest.raises(UserError, match="split 'test' does not exist.*'val'"):
        DavisDataset(tmp_path).split("test")


def test_cached_dataset_is_generated_once(tmp_path: Path) -> None:
    first = cached_synthetic_davis(tmp_path, SMALL)
    stamp = (first.root / ".complete").stat().st_mtime_ns
    second = cached_synthetic_davis(tmp_path, SMALL)
    assert second.root == first.root and (second.root / ".complete").stat().st_mtime_ns == stamp


def test_a_test_dev_sequence_annotated_only_on_its_first_frame_reads_as_a_prompt(tmp_path: Path) -> None:
    labels = np.zeros((1, 8, 8), dtype=np.uint8)
    labels[0, 1:4, 1:4], labels[0, 5:7, 5:7] = 1, 2
    frames = np.full((4, 8, 8, 3), 90, dtype=np.uint8)
    write_sequence(tmp_path, VideoSequence("td", frames, labels, [f"{t:05d}" for t in range(4)]))
    assert sorted(p.name for p in (tmp_path / "Annotations/480p/td").iterdir()) == ["00000.png"]
    video = DavisDataset(tmp_path).load("td")
    assert video.frames.shape == (4, 8, 8, 3) and np.array_equal(video.labels, labels)
    assert video.object_ids == [1, 2] and not video.fully_annotated
