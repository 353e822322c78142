"""Saving and loading the models this package quantizes (config + state dict in one ``torch.save`` file)."""

from __future__ import annotations

from pathlib import Path

import torch
from pydantic import ValidationError

from hilnas.errors import UserError
from search.families.mobilellm_flash.model import MobileLLM
from search.families.mobilellm_flash.space import ArchConfig


def save_model(model: MobileLLM, path: Path) -> None:
    """Write atomically, so a concurrent reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(path.suffix + ".partial")
    torch.save({"config": model.config.model_dump(mode="json"), "state_dict": model.state_dict()}, partial)
    partial.replace(path)


def load_model(path: str | Path) -> MobileLLM:
    """The MobileLLM stored at ``path``; a missing file or a non-Llama-style checkpoint is a ``UserError``."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"There is no model file at {path}.")
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
    return model.eval()
