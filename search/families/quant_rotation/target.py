"""What a recipe quantizes: a Llama-style model and token streams of text in its own vocabulary.

Without a path it is the hilnas backbone (``mobilellm_flash.backbone``, trained and cached on first
use) with the corpus it was trained on, already encoded. A backbone cache folder brings its encoded
corpus too. Any other checkpoint (Hugging Face Llama folder, or a hilnas file saved with its
tokenizer) is calibrated and scored on the standard-library corpus (the backbone's default train/validation
split) encoded by its tokenizer.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from torch import Tensor

from evaluators.corpus import build_stdlib_corpus
from hilnas.errors import UserError
from search.families.mobilellm_flash.backbone import (
    INFO_FILE,
    Backbone,
    BackboneConfig,
    load_backbone,
    load_or_train_backbone,
)
from search.families.mobilellm_flash.model import MobileLLM
from search.families.quant_rotation.checkpoint import load_checkpoint
from search.families.quant_rotation.data import TokenStreams, calibration_set, heldout_set
from search.families.quant_rotation.transform import require_llama_style


@dataclass
class QuantTarget:
    model: MobileLLM
    streams: TokenStreams
    description: str  # for tables and logs: where the model and its text come from

    def windows(self, seq_len: int, heldout: int, calibration: int, seed: int = 0) -> tuple[Tensor, Tensor]:
        """Held-out and calibration windows of ``seq_len`` predictions each (bad sizes are a ``UserError``)."""
        if seq_len > self.model.config.max_context:
            raise UserError(f"seq_len {seq_len} is longer than the model's {self.model.config.max_context} positions.")
        return (
            heldout_set(self.streams.validation, heldout, seq_len),
            calibration_set(self.streams.train, calibration, seq_len, seed),
        )


def load_target(path: str | Path | None = None, backbone: BackboneConfig | None = None) -> QuantTarget:
    """The model at ``path`` (None: the hilnas backbone ``backbone`` describes, the default one when None) and its
    token streams; bad input is a UserError."""
    if path is None:
        return _backbone_target(load_or_train_backbone(backbone or BackboneConfig()))
    if (Path(path) / INFO_FILE).is_file():
        return _backbone_target(load_backbone(path))
    model, tokenizer = load_checkpoint(path)
    if tokenizer is None:
        raise UserError(
            f"{path} holds no tokenizer, so there is no text in its vocabulary to calibrate and score it on "
            "(save it with its tokenizer, or pass a Hugging Face checkpoint folder)."
        )
    corpus = build_stdlib_corpus()
    streams = TokenStreams(tokenizer.encode_documents(corpus.train), tokenizer.encode_documents(corpus.validation))
    params = model.config.n_params()
    description = f"{path} ({params:,} params, vocabulary {tokenizer.vocab_size}; standard-library corpus)"
    return QuantTarget(require_llama_style(model), streams, description)


def _backbone_target(backbone: Backbone) -> QuantTarget:
    return QuantTarget(
        require_llama_style(backbone.model),
        TokenStreams(backbone.train_tokens, backbone.val_tokens),
        f"hilnas backbone {backbone.path} ({backbone.model.config.n_params():,} params, "
        f"vocabulary {backbone.tokenizer.vocab_size})",
    )
