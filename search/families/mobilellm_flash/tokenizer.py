"""The backbone's tokenizer: a byte-level BPE trained on the corpus, stored as a standard ``tokenizer.json``.

Byte-level BPE never meets an unknown character (every UTF-8 byte is in the base alphabet), and
the ``tokenizer.json`` format is what Hugging Face checkpoints ship, so a trained backbone and a
local Llama-style checkpoint are read by the same ``TextTokenizer``. Training and encoding use
the Rust ``tokenizers`` library: training on a few megabytes takes seconds, and ``encode_batch``
encodes documents in parallel.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

#: Written between documents in a token stream, so the model learns where one text ends.
DOCUMENT_SEPARATOR = "<|endoftext|>"


class TextTokenizer:
    """A ``tokenizers.Tokenizer`` plus the token that separates documents in a stream."""

    def __init__(self, tokenizer: Tokenizer, separator: str = DOCUMENT_SEPARATOR) -> None:
        separator_id = tokenizer.token_to_id(separator)
        if separator_id is None:
            raise ValueError(f"the tokenizer has no document separator token {separator!r}")
        self.tokenizer = tokenizer
        self.separator = separator
        self.separator_id = separator_id

    @classmethod
    def from_file(cls, path: str | Path, separator: str = DOCUMENT_SEPARATOR) -> TextTokenizer:
        return cls(Tokenizer.from_file(str(path)), separator)

    def save(self, path: str | Path) -> None:
        self.tokenizer.save(str(path))

    @property
    def vocab_size(self) -> int:
        """Ids run from 0 to vocab_size - 1 (special tokens included)."""
        return self.tokenizer.get_vocab_size(with_added_tokens=True)

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=False)

    def encode_documents(self, documents: Sequence[str]) -> np.ndarray:
        """All documents as one token stream, the separator token between consecutive documents."""
        dtype = np.uint16 if self.vocab_size <= np.iinfo(np.uint16).max + 1 else np.int32
        if not documents:
            return np.zeros(0, dtype=dtype)
        pieces: list[np.ndarray] = []
        separator = np.array([self.separator_id], dtype=dtype)
        for i, encoding in enumerate(self.tokenizer.encode_batch(list(documents), add_special_tokens=False)):
            if i:
                pieces.append(separator)
            pieces.append(np.asarray(encoding.ids, dtype=dtype))
        return np.concatenate(pieces)


def train_tokenizer(documents: Iterable[str], vocab_size: int = 2048, min_frequency: int = 2) -> TextTokenizer:
    """A byte-level BPE of at most ``vocab_size`` tokens (256 bytes + separator + merges) learnt from ``documents``.

    A small corpus may stop short of ``vocab_size`` when no pair occurs ``min_frequency`` times.
    """
    base = len(pre_tokenizers.ByteLevel.alphabet()) + 1
    if vocab_size < base:
        raise ValueError(f"a byte-level vocabulary needs at least {base} tokens, not {vocab_size}")
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=[DOCUMENT_SEPARATOR],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(documents, trainer=trainer)
    return TextTokenizer(tokenizer)
