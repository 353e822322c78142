"""Hugging Face Llama-style checkpoint folders <-> ``MobileLLM`` (config.json, safetensors/bin weights, tokenizer.json).

A Llama block is a MobileLLM block with full attention: the same RMSNorm, SwiGLU, grouped-query
attention and rotary embedding. HF's ``rotate_half`` layout (cos/sin repeated over both halves,
``rotate_half(x) = (-x2, x1)``) rotates feature i with feature i + head_dim / 2, which is exactly
``model.apply_rope``; a query head h uses KV head h // (heads / KV heads) in both. So loading is a
renaming of tensors. Variants the model does not compute (RoPE scaling, biases, other activations)
are refused rather than silently approximated.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch
from pydantic import ValidationError
from safetensors.torch import load_file, save_file
from tokenizers import Tokenizer

from hilnas.errors import UserError
from search.families.mobilellm_flash.model import MobileLLM
from search.families.mobilellm_flash.space import ArchConfig, LayerConfig
from search.families.mobilellm_flash.tokenizer import DOCUMENT_SEPARATOR, TextTokenizer

#: HF tensor name (after "model.") -> MobileLLM tensor name; N is the layer index.
_LAYER_NAMES = {
    "self_attn.q_proj.weight": "attn.q_proj.weight",
    "self_attn.k_proj.weight": "attn.k_proj.weight",
    "self_attn.v_proj.weight": "attn.v_proj.weight",
    "self_attn.o_proj.weight": "attn.o_proj.weight",
    "mlp.gate_proj.weight": "ffn.gate_proj.weight",
    "mlp.up_proj.weight": "ffn.up_proj.weight",
    "mlp.down_proj.weight": "ffn.down_proj.weight",
    "input_layernorm.weight": "attn_norm.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
}
_TOP_NAMES = {"model.embed_tokens.weight": "tok_embeddings.weight", "model.norm.weight": "norm.weight"}
_LAYER_PATTERN = re.compile(r"model\.layers\.(\d+)\.(.+)")
_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def load_hf_llama(directory: str | Path) -> tuple[MobileLLM, TextTokenizer]:
    """The model (eval mode, float32) and tokenizer of a local HF Llama-style checkpoint folder."""
    directory = Path(directory)
    if not directory.is_dir():
        raise UserError(f"There is no checkpoint folder at {directory}.")
    hf_config = _read_config(directory)
    arch = _arch_config(hf_config, directory)
    state = _read_weights(directory)
    model = MobileLLM(arch)
    model.load_state_dict(_renamed(state, arch, directory))
    tokenizer = _read_tokenizer(directory, hf_config, arch.vocab_size)
    return model.eval(), tokenizer


def save_hf_llama(model: MobileLLM, tokenizer: TextTokenizer, directory: str | Path) -> None:
    """Write ``model`` as a Llama checkpoint folder (config.json, model.safetensors, tokenizer.json).

    Only a plain Llama is expressible: every layer full attention with the same widths, no block sharing.
    """
    config = model.config
    first = config.layers[0]
    if config.block_repeat != 1 or any(layer != first or layer.attention != "full" for layer in config.layers):
        raise ValueError("only uniform, full-attention models without block sharing can be saved as Llama")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    hf_config = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": config.dim,
        "num_hidden_layers": len(config.layers),
        "num_attention_heads": first.n_heads,
        "num_key_value_heads": first.n_kv_heads,
        "head_dim": config.head_dim,
        "intermediate_size": first.ffn_dim,
        "vocab_size": config.vocab_size,
        "max_position_embeddings": config.max_context,
        "rms_norm_eps": config.norm_eps,
        "rope_theta": config.rope_theta,
        "tie_word_embeddings": config.share_embeddings,
        "hidden_act": "silu",
        "attention_bias": False,
        "mlp_bias": False,
        "bos_token_id": tokenizer.separator_id,
        "eos_token_id": tokenizer.separator_id,
        "torch_dtype": "float32",
    }
    (directory / "config.json").write_text(json.dumps(hf_config, indent=2) + "\n", encoding="utf-8")
    names = {mine: hf for hf, mine in _TOP_NAMES.items()}
    for i in range(len(config.layers)):
        names.update({f"blocks.{i}.{mine}": f"model.layers.{i}.{hf}" for hf, mine in _LAYER_NAMES.items()})
    state = model.state_dict()
    tensors = {names[name]: state[name].detach().contiguous().clone() for name in names}
    if not config.share_embeddings:
        tensors["lm_head.weight"] = state["output.weight"].detach().contiguous().clone()
    save_file(tensors, str(directory / "model.safetensors"), metadata={"format": "pt"})
    tokenizer.save(directory / "tokenizer.json")


def _read_config(directory: Path) -> dict[str, Any]:
    path = directory / "config.json"
    if not path.is_file():
        raise UserError(f"{directory} is not a Hugging Face checkpoint folder (it has no config.json).")
    try:
        hf_config = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path} is not valid JSON.") from exc
    if not isinstance(hf_config, dict):
        raise UserError(f"{path} is not a JSON object.")
    kind = hf_config.get("model_type")
    if kind != "llama" and "LlamaForCausalLM" not in (hf_config.get("architectures") or []):
        raise UserError(f"{directory} is not a Llama-style checkpoint (its config.json says model_type {kind!r}).")
    return hf_config


def _arch_config(hf: dict[str, Any], directory: Path) -> ArchConfig:
    """The MobileLLM architecture of a Llama config; refuses variants this model would compute differently."""
    rope = hf.get("rope_parameters") or hf.get("rope_scaling") or {}
    rope_type = rope.get("rope_type", rope.get("type", "default"))
    if rope_type != "default":
        raise UserError(f"{directory} uses {rope_type!r} RoPE scaling, which hilnas does not implement.")
    for flag in ("attention_bias", "mlp_bias"):
        if hf.get(flag):
            raise UserError(f"{directory} has {flag.replace('_', ' ')} terms, which a MobileLLM block does not have.")
    if hf.get("hidden_act", "silu") != "silu":
        raise UserError(f"{directory} uses the {hf['hidden_act']!r} activation; a MobileLLM block uses SiLU (SwiGLU).")
    try:
        heads = int(hf["num_attention_heads"])
        layer = LayerConfig(
            n_heads=heads,
            n_kv_heads=int(hf.get("num_key_value_heads") or heads),
            ffn_dim=int(hf["intermediate_size"]),
        )
        return ArchConfig(
            vocab_size=int(hf["vocab_size"]),
            dim=int(hf["hidden_size"]),
            head_dim=int(hf.get("head_dim") or int(hf["hidden_size"]) // heads),
            layers=[layer] * int(hf["num_hidden_layers"]),
            share_embeddings=bool(hf.get("tie_word_embeddings", False)),  # HF Llama's default is untied
            max_context=int(hf.get("max_position_embeddings", 2048)),
            rope_theta=float(rope.get("rope_theta", hf.get("rope_theta", 10000.0))),
            norm_eps=float(hf.get("rms_norm_eps", 1e-6)),
        )
    except KeyError as exc:
        raise UserError(f"The config.json of {directory} lacks {exc.args[0]!r}, so it is not a Llama config.") from exc
    except (TypeError, ValueError, ValidationError) as exc:
        reason = str(exc).splitlines()[-1 if isinstance(exc, ValidationError) else 0].strip()
        raise UserError(f"The config.json of {directory} describes no buildable Llama model ({reason}).") from exc


def _read_weights(directory: Path) -> dict[str, torch.Tensor]:
    """All tensors of the checkpoint as float32, from a single file or the shards an index names."""
    for name in _WEIGHT_FILES:
        index = directory / f"{name}.index.json"
        if index.is_file():
            shards = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
            break
        if (directory / name).is_file():
            shards = [name]
            break
    else:
        raise UserError(f"{directory} has no model.safetensors or pytorch_model.bin weights.")
    state: dict[str, torch.Tensor] = {}
    for shard in shards:
        path = directory / shard
        try:
            part = load_file(str(path)) if shard.endswith(".safetensors") else torch.load(path, weights_only=True)
        except Exception as exc:  # safetensors and torch.load raise many types for a file that is not weights
            raise UserError(f"Cannot read the weights file {path} ({type(exc).__name__}).") from exc
        state.update({key: value.float() for key, value in part.items()})
    return state


def _renamed(state: dict[str, torch.Tensor], arch: ArchConfig, directory: Path) -> dict[str, torch.Tensor]:
    """HF tensor names -> MobileLLM's, with every tensor accounted for and of the right shape."""
    renamed: dict[str, torch.Tensor] = {}
    for name, tensor in state.items():
        match = _LAYER_PATTERN.fullmatch(name)
        if name in _TOP_NAMES:
            renamed[_TOP_NAMES[name]] = tensor
        elif match and match.group(2) in _LAYER_NAMES:
            renamed[f"blocks.{match.group(1)}.{_LAYER_NAMES[match.group(2)]}"] = tensor
        elif name == "lm_head.weight":
            if not arch.share_embeddings:
                renamed["output.weight"] = tensor
        elif not name.endswith("rotary_emb.inv_freq"):  # older checkpoints store the RoPE frequencies
            raise UserError(f"{directory} holds a tensor {name!r} that a Llama model does not have.")
    if arch.share_embeddings and "tok_embeddings.weight" in renamed:
        renamed["output.weight"] = renamed["tok_embeddings.weight"]
    expected = _expected_shapes(arch)
    missing = sorted(set(expected) - set(renamed))
    if missing:
        raise UserError(f"The weights in {directory} lack {len(missing)} tensors of the model, such as {missing[0]!r}.")
    for name, shape in expected.items():
        if tuple(renamed[name].shape) != shape:
            raise UserError(
                f"The tensor {name!r} in {directory} has shape {tuple(renamed[name].shape)}, "
                f"not {shape} as config.json says."
            )
    return renamed


def _expected_shapes(arch: ArchConfig) -> dict[str, tuple[int, ...]]:
    with torch.device("meta"):
        return {name: tuple(tensor.shape) for name, tensor in MobileLLM(arch).state_dict().items()}


def _read_tokenizer(directory: Path, hf_config: dict[str, Any], vocab_size: int) -> TextTokenizer:
    """tokenizer.json; documents are separated by the checkpoint's end-of-sequence token."""
    path = directory / "tokenizer.json"
    if not path.is_file():
        raise UserError(f"{directory} has no tokenizer.json (hilnas reads Hugging Face fast tokenizers).")
    try:
        tokenizer = Tokenizer.from_file(str(path))
    except Exception as exc:  # the Rust library raises plain Exception for a malformed file
        raise UserError(f"Cannot read {path} as a Hugging Face tokenizer ({exc}).") from exc
    eos = hf_config.get("eos_token_id")
    eos = eos[0] if isinstance(eos, list) and eos else eos
    separator = tokenizer.id_to_token(eos) if isinstance(eos, int) else None
    separator = separator or (DOCUMENT_SEPARATOR if tokenizer.token_to_id(DOCUMENT_SEPARATOR) is not None else None)
    if separator is None:
        raise UserError(f"{directory} names no end-of-sequence token (eos_token_id) to separate documents with.")
    text_tokenizer = TextTokenizer(tokenizer, separator)
    if text_tokenizer.vocab_size > vocab_size:
        raise UserError(
            f"The tokenizer of {directory} has {text_tokenizer.vocab_size} tokens, more than the model's {vocab_size}."
        )
    return text_tokenizer
