"""Reading and writing the models this package quantizes, with their tokenizers.

Two formats: a Hugging Face Llama-style checkpoint folder (config.json, safetensors weights,
tokenizer.json; ``mobilellm_flash.hf_checkpoint``), and hilnas's own single ``torch.save`` file
(MobileLLM config + state dict, and the tokenizer when one was saved with it).
"""

from __future__ import annotations

from pathlib import Path

import torch
from pydantic import ValidationError
from tokenizers import Tokenizer

from hilnas.errors import UserError
from search.families.mobilellm_flash.hf_checkpoint import load_hf_llama
from search.families.mobilellm_flash.model import MobileLLM
from search.families.mobilellm_flash.space import ArchConfig
from search.families.mobilellm_flash.tokenizer import TextTokenizer


def save_model(model: MobileLLM, path: Path, tokenizer: TextTokenizer | None = None) -> None:
    """Write atomically, so a concurrent reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(path.suffix + ".partial")
    payload = {"config": model.config.model_dump(mode="json"), "state_dict": model.state_dict()}
    if tokenizer is not None:
        payload["tokenizer"] = {"json": tokenizer.tokenizer.to_str(), "separator": tokenizer.separator}
    torch.save(payload, partial)
    partial.replace(path)


def load_model(path: str | Path) -> MobileLLM:
    """The MobileLLM stored at ``path`` (either format); anything else is a ``UserError``."""
    return load_checkpoint(path)[0]


def load_checkpoint(path: str | Path) -> tuple[MobileLLM, TextTokenizer | None]:
    """Model (eval mode) and tokenizer of a checkpoint folder or a hilnas file (whose tokenizer may be absent)."""
    path = Path(path)
    if path.is_dir():
        return load_hf_llama(path)
    if not path.is_file():
        raise UserError(f"There is no model file or checkpoint folder at {path}.")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a file that is not a checkpoint
        raise UserError(f"Cannot read {path} as a PyTorch checkpoint ({type(exc).__name__}).") from exc
    if not isinstance(payload, dict) or "config" not in payload or "state_dict" not in payload:
        raise UserError(f"{path} is not a Llama-style hilnas checkpoint (it needs a MobileLLM config and weights).")
    try:
        model = MobileLLM(ArchConfig.model_validate(payload["config"]))
        model.load_state_dict(payload["state_dict"])
    except (ValidationError, RuntimeError) as exc:
        raise UserError(f"{path} is not a Llama-style hilnas checkpoint: {str(exc).splitlines()[0]}.") from exc
    stored = payload.get("tokenizer")
    if stored is None:
        return model.eval(), None
    try:
        tokenizer = TextTokenizer(Tokenizer.from_str(stored["json"]), stored["separator"])
    except Exception as exc:  # the Rust library raises plain Exception for a malformed tokenizer
        raise UserError(f"The tokenizer stored in {path} cannot be read ({type(exc).__name__}).") from exc
    if tokenizer.vocab_size > model.config.vocab_size:
        raise UserError(
            f"The tokenizer in {path} has {tokenizer.vocab_size} tokens, more than the model's "
            f"{model.config.vocab_size}."
        )
    return model.eval(), tokenizer
