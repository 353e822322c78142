"""Finding what a requirement is about: the paths it names, BM25 code search, trajectory retrieval.

BM25 (rank-bm25) over line windows is the lexical search the Agent-as-a-Judge paper's "search"
step needs: requirements name identifiers, libraries and file names, which lexical matching finds
without an embedding model (none can be downloaded here).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rank_bm25 import BM25L

from agents.judge.workspace import AccessRefused, Workspace
from hilnas.errors import UserError

WINDOW_LINES = 30
WINDOW_STRIDE = 15
_BACKTICKED = re.compile(r"`([^`\n]+)`")
_URL = re.compile(r"(?:https?://|www\.|~/)\S+")
_EXTENSION_WORDS = (
    "py txt md rst csv tsv json jsonl yaml yml toml cfg ini ipynb html log sh pt pth pte ckpt pkl joblib "
    "npy npz h5 hdf5 onnx tflite png jpg jpeg gif bmp svg pdf wav mp3 mp4 avi gz zip tar parquet xlsx db sqlite"
)
FILE_EXTENSIONS = frozenset(_EXTENSION_WORDS.split())
_PATH_LIKE = re.compile(r"(?<![\w/.-])((?:[\w.-]+/)+[\w.-]*|[\w.-]+\.[A-Za-z0-9]{1,6})(?![\w/])")
_QUOTED = re.compile(r"\"([^\"\n]{2,60})\"|“([^”\n]{2,60})”")
_WORD = re.compile(r"[A-Za-z][a-z]+|[A-Z]+(?![a-z])|\d+")
_STOPWORD_TEXT = (
    "the a an and or of in to is are be for with by on as "
    "at from that this it its using use used file files should must which into via"
)
_STOPWORDS = frozenset(_STOPWORD_TEXT.split())


def named_paths(criteria: str) -> list[str]:
    """Files and folders a criterion names, in order (backticked names first, then path-like tokens)."""
    criteria = _URL.sub(" ", criteria)
    backticked = [t.strip() for t in _BACKTICKED.findall(criteria)]
    # Unquoted tokens count only with a file extension or a trailing slash ("start/end" is prose).
    bare = [m.group(1).strip("'\".,;:") for m in _PATH_LIKE.finditer(_BACKTICKED.sub(" ", criteria))]
    bare = [t for t in bare if t.endswith("/") or _extension(t) in FILE_EXTENSIONS]
    return list(dict.fromkeys(t for t in backticked + bare if _looks_like_path(t)))


def _extension(token: str) -> str:
    name = token.rstrip("/").rsplit("/", 1)[-1]
    return name.rsplit(".", 1)[-1].lower() if "." in name else ""


def _looks_like_path(token: str) -> bool:
    if not token or " " in token or _URL.match(token):
        return False
    return "/" in token or _extension(token) in FILE_EXTENSIONS


def quoted_terms(criteria: str) -> list[str]:
    """Terms a criterion quotes: "double-quoted" names (datasets, models, libraries) and backticked non-paths."""
    terms = [a or b for a, b in _QUOTED.findall(criteria)]
    terms += [t.strip() for t in _BACKTICKED.findall(criteria) if not _looks_like_path(t.strip())]
    return list(dict.fromkeys(t for t in terms if t))


def tokenize(text: str) -> list[str]:
    """Lower-case words with identifiers split (``DataLoader`` and ``data_loader`` both give data, loader)."""
    return [w.lower() for w in _WORD.findall(text) if w.lower() not in _STOPWORDS]


class _Bm25:
    """BM25L ranking restricted to documents that share a term with the query.

    BM25L rather than Okapi BM25: Okapi's idf is zero or negative for a term found in half the
    documents or more, which hides the best match in the small corpora a judge sees (a few files,
    a short trajectory).
    """

    def __init__(self, corpus: list[list[str]]) -> None:
        self._terms = [set(doc) for doc in corpus]
        self._bm25 = BM25L(corpus) if corpus else None

    def top(self, query: str, k: int) -> list[tuple[int, float]]:
        terms = tokenize(query)
        if self._bm25 is None or not terms:
            return []
        scores = self._bm25.get_scores(terms)
        matching = [i for i, doc in enumerate(self._terms) if doc.intersection(terms)]
        return [(i, float(scores[i])) for i in sorted(matching, key=lambda i: (-scores[i], i))[:k]]


@dataclass(frozen=True)
class Hit:
    """A search result: a line span of a file (or a trajectory step) and its BM25 score."""

    path: str
    start_line: int
    end_line: int
    score: float


class CodeIndex:
    """BM25 over overlapping line windows of the workspace's text files (up to ``max_total_bytes`` in all)."""

    def __init__(self, workspace: Workspace, max_total_bytes: int = 50_000_000) -> None:
        self.workspace = workspace
        self.windows: list[tuple[str, int, int]] = []
        corpus: list[list[str]] = []
        indexed = 0
        for relative, node in workspace.graph().items():
            if node.binary or indexed + min(node.size_bytes, workspace.max_file_bytes) > max_total_bytes:
                continue
            indexed += min(node.size_bytes, workspace.max_file_bytes)
            try:
                lines = self.workspace.read_bytes(relative).decode("utf-8", errors="replace").splitlines()
            except AccessRefused:
                continue
            for start in range(0, max(len(lines), 1), WINDOW_STRIDE):
                window = lines[start : start + WINDOW_LINES]
                corpus.append(tokenize(relative) + tokenize("\n".join(window)))
                self.windows.append((relative, start + 1, start + max(len(window), 1)))
                if start + WINDOW_LINES >= len(lines):
                    break
        self._index = _Bm25(corpus)

    def search(self, query: str, k: int = 5) -> list[Hit]:
        """The ``k`` best windows sharing a term with ``query``, best first."""
        return [Hit(*self.windows[i], score) for i, score in self._index.top(query, k)]


def files_named(workspace: Workspace, name: str) -> list[str]:
    """Files a named path refers to: the file itself, a folder's files, or a bare file name found anywhere."""
    cleaned = name.strip("/")
    files = list(workspace.graph())
    if workspace.is_dir(cleaned):
        return [f for f in files if f.startswith(cleaned + "/")]
    return [f for f in files if f == cleaned or f.endswith("/" + cleaned)]


def locate(workspace: Workspace, criteria: str, index: CodeIndex, k: int = 3) -> list[str]:
    """Files a criterion concerns: the files it names, then the ``k`` best other files by code search."""
    located = [f for name in named_paths(criteria) for f in files_named(workspace, name)]
    searched = [h.path for h in index.search(criteria, k=k * 3) if h.path not in located]
    return list(dict.fromkeys(located + list(dict.fromkeys(searched))[:k]))


@dataclass(frozen=True)
class TrajectoryStep:
    step: int
    text: str


class Trajectory:
    """A DevAI trajectory (list of steps, schema in ../shared/devai) indexed for BM25 retrieval."""

    def __init__(self, steps: list[dict[str, Any]]) -> None:
        self.steps = [TrajectoryStep(int(s["step"]), _step_text(s)) for s in steps]
        self._index = _Bm25([tokenize(s.text) for s in self.steps])

    @classmethod
    def load(cls, path: Path | str, schema_path: Path | None = None) -> Trajectory:
        """Read and validate a trajectory file; a malformed one is a ``UserError``."""
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise UserError(f"The trajectory file {path} does not exist.") from exc
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise UserError(f"The trajectory file {path} is not valid JSON: {exc}.") from exc
        if schema_path is not None and schema_path.is_file():
            import jsonschema

            try:
                jsonschema.validate(data, json.loads(schema_path.read_text(encoding="utf-8")))
            except jsonschema.ValidationError as exc:
                raise UserError(f"The trajectory {path} does not follow the DevAI schema: {exc.message}.") from exc
        elif not isinstance(data, list) or not all(isinstance(s, dict) and "step" in s for s in data):
            raise UserError(f"The trajectory {path} must be a list of steps, each with a 'step' number.")
        return cls(data)

    def retrieve(self, query: str, k: int = 3) -> list[Hit]:
        """The ``k`` steps most relevant to ``query``; ``path`` is ``trajectory`` and lines are step numbers."""
        return [
            Hit("trajectory", self.steps[i].step, self.steps[i].step, score) for i, score in self._index.top(query, k)
        ]

    def step_text(self, step: int, max_chars: int = 3000) -> str:
        for s in self.steps:
            if s.step == step:
                return s.text[:max_chars]
        return ""


def _step_text(step: dict[str, Any]) -> str:
    agent = step.get("agent") or {}
    parts = [
        f"user: {step.get('user_message')}" if step.get("user_message") else "",
        f"thought: {agent.get('thought', '')}",
        f"action: {agent.get('action')}" if agent.get("action") else "",
        f"environment: {step.get('environment')}" if step.get("environment") else "",
    ]
    return "\n".join(p for p in parts if p)
