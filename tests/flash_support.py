"""A tiny MobileLLM-Flash setup shared by the pipeline's and the agent's tests: a local text corpus and a spec
whose backbone trains in seconds, measured with the torch-eager backend under a short protocol."""

from __future__ import annotations

from pathlib import Path

from evaluators.corpus import CorpusConfig, extract_documents, stdlib_files


def write_corpus(path: Path) -> Path:
    """A small local text corpus (docstrings of a few stdlib packages), documents separated by blank lines."""
    documents, _ = extract_documents(stdlib_files(("json/*.py", "email/*.py", "logging/*.py")), CorpusConfig())
    path.write_text("\n\n".join(documents), encoding="utf-8")
    return path


def tiny_spec(corpus: Path, **overrides: object) -> dict:
    spec = {
        "name": "tiny-flash",
        "backbone": {
            "dim": 64,
            "n_layers": 4,
            "n_heads": 4,
            "n_kv_heads": 2,
            "head_dim": 16,
            "ffn_dim": 128,
            "vocab_size": 320,
            "max_context": 128,
            "seq_len": 64,
            "batch_size": 8,
            "train_tokens": 16_384,
            "eval_tokens": 4096,
            "corpus": str(corpus),
        },
        "backend": "torch-eager",
        "protocol": {"ci_half_width": 0.5, "time_cap_s": 0.3, "min_repeats": 5, "min_time_s": 0.0, "loads": 2},
        "workload": {"prefill_len": 32, "decode_kv_len": 48},
        "calibration": {"budget": 5, "pool": 40},
        "search": {"trials": 6, "batch_size": 3, "max_concurrency": 2, "population_size": 4, "distill_tokens": 1024},
        "verify": {"max_points": 3, "max_rounds": 2},
        "export": {"max_models": 1, "new_tokens": 6},
    }
    spec.update(overrides)
    return spec


def candidate(**overrides: object) -> dict:
    """The flat parameters of a small valid MobileLLM-Flash candidate, with ``overrides``."""
    params = {
        "n_layers": 2,
        "dim": 64,
        "n_heads": 4,
        "n_kv_heads": 2,
        "ffn_dim": [128, 192],
        "attention": ["full", "local"],
        "window": 16,
        "share_embeddings": True,
        "block_repeat": 1,
        "prefill_len": 64,
        "decode_kv_len": 128,
    }
    return params | overrides
