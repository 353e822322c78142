"""The stdlib corpus: real docstrings and comments, cleaned, deduplicated, cached and split stably."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from evaluators.corpus import (
    CorpusConfig,
    build_stdlib_corpus,
    clean_document,
    extract_documents,
    stdlib_dir,
    stdlib_files,
)

SMALL = CorpusConfig(modules=("json/*.py", "textwrap.py", "argparse.py"), validation_fraction=0.2)


def test_corpus_is_clean_unique_cached_and_split(tmp_path: Path) -> None:
    corpus = build_stdlib_corpus(SMALL, cache_dir=tmp_path)
    documents = corpus.train + corpus.validation
    assert corpus.stats["files"] == 7 and corpus.stats["documents"] == len(documents) > 100
    assert corpus.stats["raw_documents"] > len(documents)  # short, pragma and duplicate pieces were dropped
    assert all(len(d) >= SMALL.min_chars for d in documents)
    assert len({" ".join(d.lower().split()) for d in documents}) == len(documents)
    assert any("JSON" in d for d in documents)  # json's own docstrings made it in
    assert corpus.validation and not set(corpus.train) & set(corpus.validation)
    assert corpus.path is not None and corpus.path.parent == tmp_path / "corpora" and corpus.path.is_file()
    again = build_stdlib_corpus(SMALL, cache_dir=tmp_path)
    assert again.train == corpus.train and again.validation == corpus.validation
    data = corpus.as_bytes("train")
    assert data.dtype == np.uint8 and data.tobytes().decode("utf-8").startswith(corpus.train[0])


def test_stdlib_files_leave_out_third_party_and_tests() -> None:
    files = stdlib_files(("*.py", "unittest/*.py", "test/*.py"))
    parts = {part for f in files for part in f.relative_to(stdlib_dir()).parts}
    assert "test" not in parts and "site-packages" not in parts
    assert stdlib_dir() / "textwrap.py" in files


def test_cleaning_rules() -> None:
    config = CorpusConfig()
    assert clean_document("    Return self.", config) is None  # a fragment
    assert clean_document("Copyright 2001 Python Software Foundation; all rights reserved here.", config) is None
    assert clean_document("{0: [1, 2], 3: (4, 5)} -> {6: 7} ... [[8, 9]] == {10: 11} ((12))", config) is None
    kept = clean_document("First line of prose.\n\n\n    Indented   second line with   spaces.", config)
    assert kept == "First line of prose.\n\nIndented second line with spaces."


def test_comment_runs_become_one_document_and_pragmas_go(tmp_path: Path) -> None:
    source = tmp_path / "module.py"
    source.write_text(
        "# -*- coding: utf-8 -*-\n"
        "x = 1  # noqa: E501\n"
        "# The cache is keyed by the configuration so that\n"
        "# two different corpora never share a file on disk.\n"
        "y = 2\n"
        '"""Module docstring that is long enough to be kept as a document."""\n',
        encoding="utf-8",
    )
    documents, stats = extract_documents([source], CorpusConfig(docstrings=False))
    assert documents == [
        "The cache is keyed by the configuration so that two different corpora never share a file on disk."
    ]
    assert stats["files"] == 1
