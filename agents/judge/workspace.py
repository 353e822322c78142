"""Safe, read-only access to a workspace under judgment, and its graph (file tree plus Python symbols).

A workspace was written by another agent and is untrusted. Nothing in it is executed or imported:
Python files are parsed with ``ast``, PDFs and images are opened by parsers, everything else is read as
bytes. Every path is resolved and must stay inside the workspace root, so a symlink pointing out of it
is refused; reads are capped in size and binary files are described, never dumped.
"""

from __future__ import annotations

import ast
import csv
import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from hilnas.errors import UserError

SKIPPED_DIRS = frozenset({".git", "__pycache__", ".venv", "venv", "node_modules", ".mypy_cache", ".pytest_cache"})
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp", ".tif", ".tiff"})
BINARY_SNIFF_BYTES = 8192


class AccessRefused(Exception):
    """A read the workspace's safety rules do not allow (outside the root, a symlink out, too large)."""


@dataclass(frozen=True)
class Symbol:
    """A Python definition found by ``ast``: its qualified name, kind and line span."""

    name: str
    kind: str  # class | function | import
    start_line: int
    end_line: int


@dataclass
class FileNode:
    """One file in the workspace graph."""

    path: str  # relative, with forward slashes
    size_bytes: int
    binary: bool
    symbols: list[Symbol] = field(default_factory=list)
    imports: list[str] = field(default_factory=list)
    parse_error: str | None = None


@dataclass(frozen=True)
class FileView:
    """What the judge may quote from one file: text with its first line number, or a description."""

    path: str
    kind: str  # text | csv | json | pdf | image | binary | refused
    text: str
    start_line: int = 1
    end_line: int = 0
    truncated: bool = False


class Workspace:
    """A directory read under safety rules; ``graph()`` lists files and their Python symbols."""

    def __init__(self, root: Path | str, *, max_file_bytes: int = 2_000_000, max_files: int = 5000) -> None:
        root_path = Path(root)
        if not root_path.is_dir():
            raise UserError(f"The workspace {root} is not a directory.")
        self.root = root_path.resolve()
        self.max_file_bytes = max_file_bytes
        self.max_files = max_files
        self._graph: dict[str, FileNode] | None = None

    # -- safety ---------------------------------------------------------------------------------------
    def resolve(self, relative: str) -> Path:
        """The real path of ``relative``; raises ``AccessRefused`` if it leaves the workspace."""
        candidate = (self.root / relative.lstrip("/")).resolve()
        if candidate != self.root and self.root not in candidate.parents:
            raise AccessRefused(f"{relative} resolves outside the workspace")
        return candidate

    def exists(self, relative: str) -> bool:
        try:
            return self.resolve(relative).exists()
        except AccessRefused:
            return False

    def is_dir(self, relative: str) -> bool:
        try:
            return self.resolve(relative).is_dir()
        except AccessRefused:
            return False

    def read_bytes(self, relative: str, limit: int | None = None) -> bytes:
        """At most ``limit`` (default: the file cap) bytes of a regular file inside the workspace."""
        path = self.resolve(relative)
        if not path.is_file():
            raise AccessRefused(f"{relative} is not a regular file")
        limit = self.max_file_bytes if limit is None else min(limit, self.max_file_bytes)
        with path.open("rb") as handle:
            return handle.read(limit)

    def is_binary(self, relative: str) -> bool:
        sample = self.read_bytes(relative, BINARY_SNIFF_BYTES)
        if b"\0" in sample:
            return True
        try:
            sample.decode("utf-8")
        except UnicodeDecodeError as exc:  # a multi-byte character cut at the sample's end is still text
            return exc.start < len(sample) - 4
        return False

    # -- graph ----------------------------------------------------------------------------------------
    def graph(self) -> dict[str, FileNode]:
        """Every readable file (relative path -> node), symlinks out of the workspace left out."""
        if self._graph is None:
            self._graph = {}
            for relative in self._walk():
                self._graph[relative] = self._node(relative)
        return self._graph

    def _walk(self) -> list[str]:
        found: list[str] = []
        for directory, dirs, files in os.walk(self.root, followlinks=False):
            dirs[:] = sorted(d for d in dirs if d not in SKIPPED_DIRS)
            for name in sorted(files):
                relative = Path(directory, name).relative_to(self.root).as_posix()
                try:
                    if not self.resolve(relative).is_file():
                        continue
                except AccessRefused:
                    continue
                found.append(relative)
                if len(found) >= self.max_files:
                    return found
        return found

    def _node(self, relative: str) -> FileNode:
        path = self.resolve(relative)
        node = FileNode(relative, path.stat().st_size, self.is_binary(relative))
        if relative.endswith(".py") and not node.binary:
            node.symbols, node.imports, node.parse_error = python_outline(self._decode(relative)[0])
        return node

    def tree(self, max_lines: int = 300) -> str:
        """The file tree with sizes and each Python file's top-level definitions (the LLM sees it)."""
        lines = []
        for relative, node in self.graph().items():
            defined = [s.name for s in node.symbols if s.kind != "import" and "." not in s.name]
            outline = f" defines {', '.join(defined[:12])}" if defined else ""
            lines.append(f"{relative} ({node.size_bytes} B){outline}")
            if len(lines) >= max_lines:
                lines.append(f"... {len(self.graph()) - max_lines} more files")
                break
        return "\n".join(lines)

    # -- reading --------------------------------------------------------------------------------------
    def _decode(self, relative: str) -> tuple[str, bool]:
        path = self.resolve(relative)
        data = self.read_bytes(relative)
        return data.decode("utf-8", errors="replace"), path.stat().st_size > len(data)

    def view(self, relative: str, *, max_lines: int = 200, around: tuple[int, int] | None = None) -> FileView:
        """A quotable view of a file chosen by its type; ``around`` selects a line span of a text file."""
        try:
            path = self.resolve(relative)
            if not path.is_file():
                return FileView(relative, "refused", "not a regular file")
            suffix = path.suffix.lower()
            if suffix == ".pdf":
                return self._pdf_view(relative, max_lines)
            if suffix in IMAGE_SUFFIXES:
                return self._image_view(relative)
            if self.is_binary(relative):
                return FileView(relative, "binary", f"binary file, {path.stat().st_size} bytes")
            text, truncated = self._decode(relative)
        except AccessRefused as exc:
            return FileView(relative, "refused", str(exc))
        if suffix == ".csv":
            return _csv_view(relative, text, max_lines=min(max_lines, 20))
        if suffix == ".json":
            return _json_view(relative, text, truncated, max_lines)
        return _text_view(relative, text, truncated, max_lines, around)

    def _pdf_view(self, relative: str, max_lines: int) -> FileView:
        from pypdf import PdfReader
        from pypdf.errors import PdfReadError

        try:
            reader = PdfReader(io.BytesIO(self.read_bytes(relative)))
            pages = [page.extract_text() or "" for page in reader.pages[:5]]
        except (PdfReadError, ValueError, KeyError) as exc:
            return FileView(relative, "pdf", f"unreadable PDF: {exc}")
        lines = "\n".join(pages).splitlines()
        shown = lines[:max_lines]
        return FileView(relative, "pdf", "\n".join(shown), 1, len(shown), truncated=len(lines) > max_lines)

    def _image_view(self, relative: str) -> FileView:
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(io.BytesIO(self.read_bytes(relative))) as image:
                text = f"image {image.format} {image.width}x{image.height} mode {image.mode}"
        except (UnidentifiedImageError, OSError) as exc:
            text = f"not a readable image: {exc}"
        return FileView(relative, "image", text)


def python_outline(source: str) -> tuple[list[Symbol], list[str], str | None]:
    """Classes, functions (with methods as ``Class.method``) and imported modules of a Python source."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError) as exc:
        return [], [], f"{type(exc).__name__}: {exc}"
    symbols: list[Symbol] = []
    imports: list[str] = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                kind = "class" if isinstance(child, ast.ClassDef) else "function"
                name = f"{prefix}{child.name}"
                symbols.append(Symbol(name, kind, child.lineno, child.end_lineno or child.lineno))
                visit(child, f"{name}.")
            elif isinstance(child, ast.Import | ast.ImportFrom):
                module = getattr(child, "module", None) or ""
                names = [alias.name for alias in child.names]
                imported = [f"{module}.{n}" if module else n for n in names]
                imports.extend(imported)
                for item in imported:
                    symbols.append(Symbol(item, "import", child.lineno, child.end_lineno or child.lineno))
            else:
                visit(child, prefix)

    visit(tree, "")
    return symbols, imports, None


def _text_view(relative: str, text: str, truncated: bool, max_lines: int, around: tuple[int, int] | None) -> FileView:
    lines = text.splitlines()
    start, end = (1, len(lines)) if around is None else around
    start = max(1, start)
    end = min(len(lines), end, start + max_lines - 1)
    shown = lines[start - 1 : end]
    return FileView(relative, "text", "\n".join(shown), start, end, truncated or end < len(lines))


def _csv_view(relative: str, text: str, max_lines: int) -> FileView:
    rows = text.splitlines()
    head = rows[:max_lines]
    try:
        columns = next(csv.reader(io.StringIO(head[0]))) if head else []
        note = f"CSV, {len(rows)} lines read, columns: {columns}"
    except csv.Error as exc:
        note = f"CSV that does not parse: {exc}"
    return FileView(relative, "csv", note + "\n" + "\n".join(head), 1, len(head), truncated=len(rows) > max_lines)


def _json_view(relative: str, text: str, truncated: bool, max_lines: int) -> FileView:
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError as exc:
        return FileView(relative, "json", f"JSON that does not parse: {exc}\n{text[:2000]}", truncated=True)
    pretty = json.dumps(parsed, indent=1, default=str).splitlines()
    shown = pretty[:max_lines]
    return FileView(relative, "json", "\n".join(shown), 1, len(shown), truncated or len(pretty) > max_lines)
