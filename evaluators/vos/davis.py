"""Reading and writing the DAVIS 2017 folder layout.

::

    <root>/JPEGImages/<resolution>/<sequence>/00000.jpg ...
    <root>/Annotations/<resolution>/<sequence>/00000.png ...   palette PNG: 0 background, 1..N objects, 255 void
    <root>/ImageSets/2017/<split>.txt                            one sequence name per line

A sequence is annotated on every frame (train, val) or, as in DAVIS test-dev and test-challenge, only on
its first frame, whose mask is the prompt: such a sequence can be tracked but not scored, and its predicted
masks are written in the same palette-PNG layout for submission (``write_masks``). Every problem with a
folder (a missing frame, a missing annotation in a sequence annotated beyond its first frame, a mask of the
wrong size, an object that appears later without being in the first frame) is a ``UserError`` naming the
sequence and the frame, so a user pointing at a damaged copy of DAVIS learns what to fix instead of
getting a wrong score.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from evaluators.vos.jf import VOID_LABEL, object_ids
from hilnas.errors import UserError

DEFAULT_RESOLUTION = "480p"
IMAGESET_YEAR = "2017"


@dataclass
class VideoSequence:
    """One video: RGB frames ``[T, H, W, 3]`` and label maps (uint8, 255 = void) of its annotated frames:
    ``[T, H, W]``, or ``[1, H, W]`` when only the first frame is annotated (test-dev)."""

    name: str
    frames: np.ndarray
    labels: np.ndarray
    frame_names: list[str]

    @property
    def object_ids(self) -> list[int]:
        return object_ids(self.labels[0])

    @property
    def fully_annotated(self) -> bool:
        """Whether every frame has ground truth (so the sequence can be trained on and scored)."""
        return self.labels.shape[0] == len(self.frame_names)


def davis_palette() -> list[int]:
    """The 256-colour palette of DAVIS (and PASCAL VOC) annotations, flattened as Pillow expects.

    Colour ``i`` spreads the bits of ``i`` over the high bits of red, green and blue, so low ids get
    distinct saturated colours; 255 (void) comes out light grey-white as in the DAVIS files.
    """
    palette = []
    for index in range(256):
        red = green = blue = 0
        value = index
        for shift in range(7, -1, -1):
            red |= (value & 1) << shift
            green |= ((value >> 1) & 1) << shift
            blue |= ((value >> 2) & 1) << shift
            value >>= 3
        palette.extend((red, green, blue))
    return palette


class DavisDataset:
    """A DAVIS 2017 folder; ``load`` reads and checks one sequence."""

    def __init__(self, root: str | Path, resolution: str = DEFAULT_RESOLUTION) -> None:
        self.root = Path(root)
        self.resolution = resolution
        if not self.image_dir.is_dir():
            raise UserError(f"{self.root} is not a DAVIS folder: it has no JPEGImages/{resolution} directory.")

    @property
    def image_dir(self) -> Path:
        return self.root / "JPEGImages" / self.resolution

    @property
    def annotation_dir(self) -> Path:
        return self.root / "Annotations" / self.resolution

    def split(self, name: str) -> list[str]:
        """Sequence names listed in ``ImageSets/2017/<name>.txt``."""
        path = self.root / "ImageSets" / IMAGESET_YEAR / f"{name}.txt"
        if not path.is_file():
            available = sorted(p.stem for p in path.parent.glob("*.txt"))
            raise UserError(f"DAVIS split {name!r} does not exist in {path.parent} (available: {available}).")
        return [line.strip() for line in path.read_text().splitlines() if line.strip()]

    def load_split(self, name: str) -> list[VideoSequence]:
        return [self.load(sequence) for sequence in self.split(name)]

    def load(self, sequence: str) -> VideoSequence:
        """Frames and labels of ``sequence``, checked for gaps, sizes and object ids.

        Annotations must exist for every frame, or for the first frame only (a test-dev sequence).
        """
        frame_paths = sorted((self.image_dir / sequence).glob("*.jpg"))
        if not frame_paths:
            raise UserError(f"Sequence {sequence!r} has no frames in {self.image_dir / sequence}.")
        names = [p.stem for p in frame_paths]
        _check_consecutive(sequence, names)
        later = [(self.annotation_dir / sequence / f"{name}.png").is_file() for name in names[1:]]
        first_frame_only = not any(later)
        frames, labels = [], []
        for index, path in enumerate(frame_paths):
            image = np.asarray(Image.open(path).convert("RGB"))
            if frames and image.shape != frames[0].shape:
                raise UserError(
                    f"Sequence {sequence!r} frame {path.stem} is {_size(image)} "
                    f"but its first frame is {_size(frames[0])}."
                )
            frames.append(image)
            if index == 0 or not first_frame_only:
                labels.append(self._read_annotation(sequence, path.stem, image.shape[:2]))
        video = VideoSequence(sequence, np.stack(frames), np.stack(labels), names)
        _check_object_ids(video)
        return video

    def _read_annotation(self, sequence: str, frame: str, image_shape: tuple[int, int]) -> np.ndarray:
        path = self.annotation_dir / sequence / f"{frame}.png"
        if not path.is_file():
            raise UserError(f"Sequence {sequence!r} frame {frame} has no annotation {path}.")
        with Image.open(path) as png:
            if png.mode not in ("P", "L"):
                raise UserError(
                    f"Sequence {sequence!r} frame {frame}: annotation mode is {png.mode}, "
                    "not a palette (P) or grey (L) PNG of object ids."
                )
            label = np.asarray(png)
        if label.shape != image_shape:
            raise UserError(
                f"Sequence {sequence!r} frame {frame}: mask is {_size(label)} but the image is {_size(image_shape)}."
            )
        return label.astype(np.uint8)


def _size(array_or_shape: np.ndarray | tuple[int, ...]) -> str:
    shape = array_or_shape.shape if isinstance(array_or_shape, np.ndarray) else array_or_shape
    return f"{shape[1]}x{shape[0]}"


def _check_consecutive(sequence: str, names: list[str]) -> None:
    if not all(name.isdigit() for name in names):
        bad = next(name for name in names if not name.isdigit())
        raise UserError(f"Sequence {sequence!r} frame {bad!r} is not named by its frame number.")
    numbers = [int(name) for name in names]
    width = len(names[0])
    for expected, number in zip(range(numbers[0], numbers[0] + len(numbers)), numbers, strict=True):
        if number != expected:
            raise UserError(f"Sequence {sequence!r} is missing frame {expected:0{width}d}.")


def _check_object_ids(video: VideoSequence) -> None:
    first = set(video.object_ids)
    if not first:
        raise UserError(f"Sequence {video.name!r} frame {video.frame_names[0]} annotates no object to track.")
    for name, label in zip(video.frame_names[: len(video.labels)], video.labels, strict=True):
        extra = sorted(set(np.unique(label).tolist()) - first - {0, VOID_LABEL})
        if extra:
            raise UserError(
                f"Sequence {video.name!r} frame {name} contains object id {extra[0]}, "
                "which is absent from the first frame."
            )


def write_sequence(root: str | Path, video: VideoSequence, resolution: str = DEFAULT_RESOLUTION) -> None:
    """Write ``video`` as JPEG frames and palette PNG annotations under ``root``."""
    root = Path(root)
    image_dir = root / "JPEGImages" / resolution / video.name
    image_dir.mkdir(parents=True, exist_ok=True)
    for name, frame in zip(video.frame_names, video.frames, strict=True):
        Image.fromarray(frame).save(image_dir / f"{name}.jpg", quality=92)
    write_masks(root / "Annotations" / resolution / video.name, video.labels, video.frame_names[: len(video.labels)])


def write_masks(directory: str | Path, labels: np.ndarray, frame_names: list[str]) -> list[Path]:
    """``labels`` ``[T, H, W]`` as DAVIS palette PNGs ``<directory>/<frame>.png`` (annotations, or predictions
    in the layout the DAVIS evaluation server takes); returns the paths."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    palette = davis_palette()
    paths = []
    for name, label in zip(frame_names, labels, strict=True):
        png = Image.fromarray(np.asarray(label, dtype=np.uint8)).convert("P")  # L to P keeps the ids
        png.putpalette(palette)
        png.save(directory / f"{name}.png")
        paths.append(directory / f"{name}.png")
    return paths


def write_split(root: str | Path, split: str, sequences: list[str]) -> None:
    path = Path(root) / "ImageSets" / IMAGESET_YEAR / f"{split}.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{name}\n" for name in sequences))
