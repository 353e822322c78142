"""A natural-text corpus that needs no download: docstrings and comments of Python's standard library.

Every Python installation ships megabytes of English prose inside its standard library. This module
pulls it out with ``ast`` (docstrings) and ``tokenize`` (comments), cleans it (dedent, collapse
whitespace, drop pragmas, licence boilerplate and fragments), removes exact duplicates, and caches
the documents as JSON lines under ``<cache_dir>/corpora``. The split into train and validation is by
a hash of each document, so it is stable across runs and machines with the same Python.

Text is consumed as UTF-8 bytes (``as_bytes``): a byte-level vocabulary of 256 needs no tokenizer
training, which suits the tiny language models of the scaling sweeps and the MobileLLM backbone.

``read_local_corpus`` reads a user's own corpus (a .txt or .jsonl file) into the same ``Corpus`` with the same split.
"""

from __future__ import annotations

import ast
import hashlib
import inspect
import io
import json
import os
import re
import sys
import sysconfig
import tokenize
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from hilnas.errors import UserError
from hilnas.settings import get_settings

#: Folders under the standard library that are not its own prose: third-party code, test suites, and the
#: codecs, whose docstrings are near-identical character tables (15% of the text, trivially memorised).
EXCLUDED_PARTS = frozenset({"site-packages", "dist-packages", "test", "tests", "idle_test", "__pycache__", "encodings"})
_PRAGMA = re.compile(r"^(!|-\*-|noqa|type:|pragma|fmt:|pylint|XXX$|TODO$|[-=#*~]{3,}$)", re.IGNORECASE)
_BOILERPLATE = re.compile(r"copyright|all rights reserved|licen[cs]e", re.IGNORECASE)


@dataclass(frozen=True)
class CorpusConfig:
    """What goes into the corpus; the cache key is derived from it and the Python version."""

    docstrings: bool = True
    comments: bool = True
    min_chars: int = 40  # shorter documents are mostly fragments like "Return self."
    min_letter_fraction: float = 0.6  # drop documents that are mostly code, tables or symbols
    modules: tuple[str, ...] = ()  # glob patterns relative to the stdlib folder; empty means all
    validation_fraction: float = 0.05

    def key(self) -> str:
        excluded = sorted(EXCLUDED_PARTS)
        payload = json.dumps({**asdict(self), "python": sys.version.split()[0], "excluded": excluded}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


@dataclass
class Corpus:
    """Cleaned, deduplicated documents split into train and validation."""

    train: list[str]
    validation: list[str]
    config: CorpusConfig
    path: Path | None = None
    stats: dict[str, int] = field(default_factory=dict)

    def as_bytes(self, split: str = "train") -> np.ndarray:
        """The split as one uint8 array of UTF-8 bytes, documents separated by a blank line."""
        documents = self.train if split == "train" else self.validation
        return np.frombuffer("\n\n".join(documents).encode("utf-8"), dtype=np.uint8)


def stdlib_dir() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def stdlib_files(modules: tuple[str, ...] = ()) -> list[Path]:
    """The standard library's own ``.py`` files, sorted, without third-party packages and test suites."""
    root = stdlib_dir()
    found = set()
    for pattern in modules or ("**/*.py",):
        found.update(root.glob(pattern))
    return sorted(p for p in found if p.suffix == ".py" and not EXCLUDED_PARTS.intersection(p.relative_to(root).parts))


def _docstrings(source: str) -> Iterator[str]:
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            text = ast.get_docstring(node, clean=True)
            if text:
                yield text


def _comments(source: str) -> Iterator[str]:
    """Runs of comment lines on consecutive source lines, joined into one document each."""
    block: list[str] = []
    last_line = -2
    try:
        for token in tokenize.generate_tokens(io.StringIO(source).readline):
            if token.type != tokenize.COMMENT:
                continue
            line = token.string.lstrip("#").strip()
            if token.start[0] != last_line + 1 and block:
                yield " ".join(block)
                block = []
            last_line = token.start[0]
            if line and not _PRAGMA.match(line):
                block.append(line)
    except (tokenize.TokenError, IndentationError, SyntaxError):
        pass
    if block:
        yield " ".join(block)


def clean_document(text: str, config: CorpusConfig) -> str | None:
    """Dedented text with collapsed blank lines and spaces, or None when it is not prose worth keeping."""
    text = inspect.cleandoc(text)
    text = re.sub(r"[ \t]+", " ", text)
    text = re.sub(r"\n\s*\n+", "\n\n", text).strip()
    if len(text) < config.min_chars or _BOILERPLATE.search(text[:200]):
        return None
    letters = sum(c.isalpha() or c.isspace() for c in text)
    if letters / len(text) < config.min_letter_fraction:
        return None
    return text


def extract_documents(files: list[Path], config: CorpusConfig) -> tuple[list[str], dict[str, int]]:
    """Clean documents of ``files`` in file order, exact duplicates (after whitespace/case folding) dropped."""
    seen: set[str] = set()
    documents: list[str] = []
    raw = 0
    for path in files:
        try:
            source = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        pieces = list(_docstrings(source)) if config.docstrings else []
        pieces += list(_comments(source)) if config.comments else []
        for piece in pieces:
            raw += 1
            text = clean_document(piece, config)
            if text is None:
                continue
            fingerprint = hashlib.sha1(" ".join(text.lower().split()).encode()).hexdigest()
            if fingerprint not in seen:
                seen.add(fingerprint)
                documents.append(text)
    return documents, {"files": len(files), "raw_documents": raw, "documents": len(documents)}


def _is_validation(document: str, fraction: float) -> bool:
    digest = hashlib.sha256(document.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def build_stdlib_corpus(config: CorpusConfig | None = None, cache_dir: Path | None = None) -> Corpus:
    """The corpus for ``config``, read from the cache or built (seconds to a minute) and cached."""
    config = config or CorpusConfig()
    folder = Path(cache_dir or get_settings().cache_dir) / "corpora"
    path = folder / f"stdlib-{config.key()}.jsonl"
    if path.is_file():
        lines = path.read_text(encoding="utf-8").splitlines()
        stats = json.loads(lines[0])
        documents = [json.loads(line) for line in lines[1:]]
    else:
        documents, stats = extract_documents(stdlib_files(config.modules), config)
        folder.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".{os.getpid()}.partial")
        with partial.open("w", encoding="utf-8") as handle:
            handle.write(json.dumps(stats) + "\n")
            handle.writelines(json.dumps(d) + "\n" for d in documents)
        partial.replace(path)  # atomic: a concurrent or interrupted build never leaves half a cache
    validation = [d for d in documents if _is_validation(d, config.validation_fraction)]
    train = [d for d in documents if not _is_validation(d, config.validation_fraction)]
    return Corpus(train, validation, config, path, stats)


def read_local_corpus(path: str | Path, validation_fraction: float = 0.05) -> Corpus:
    """A user's corpus: a ``.txt`` file (documents separated by blank lines) or ``.jsonl`` ("text" per line).

    Documents are kept as written (no cleaning); the split is the stdlib corpus's hash of each document,
    so it is stable and a repeated document never straddles train and validation. Only
    ``validation_fraction`` of the returned ``CorpusConfig`` applies to a local file.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"There is no corpus file at {path}.")
    if path.suffix not in (".txt", ".jsonl"):
        raise UserError(
            f"The corpus {path} must be a .txt or .jsonl file, not {path.suffix or 'one without a suffix'}."
        )
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(f"The corpus {path} is not UTF-8 text (byte {exc.start} cannot be decoded).") from exc
    documents = _jsonl_documents(text, path) if path.suffix == ".jsonl" else _paragraph_documents(text)
    if not documents:
        raise UserError(f"The corpus {path} holds no text.")
    validation = [d for d in documents if _is_validation(d, validation_fraction)]
    train = [d for d in documents if not _is_validation(d, validation_fraction)]
    stats = {"files": 1, "documents": len(documents), "chars": sum(len(d) for d in documents)}
    return Corpus(train, validation, CorpusConfig(validation_fraction=validation_fraction), path, stats)


def _paragraph_documents(text: str) -> list[str]:
    return [piece.strip() for piece in re.split(r"\n\s*\n", text) if piece.strip()]


def _jsonl_documents(text: str, path: Path) -> list[str]:
    documents = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UserError(f"Line {number} of the corpus {path} is not valid JSON ({exc.msg}).") from exc
        if not isinstance(record, dict) or not isinstance(record.get("text"), str):
            raise UserError(f'Line {number} of the corpus {path} has no "text" string field.')
        if record["text"].strip():
            documents.append(record["text"])
    return documents
