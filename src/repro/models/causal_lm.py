"""Causal LMs: built from a config dict at CPU scale, or loaded from the hub / a local checkpoint.

Both paths return a transformers model, so every stage after this one is the same code at every
profile. Checkpoints are `save_pretrained` folders (config.json + model.safetensors).
"""
from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path

import torch

ARCHS = {"llama": "LlamaConfig", "qwen2": "Qwen2Config"}
BUILD_KEYS = {"arch", "pretrained", "dtype", "attn_implementation"}


def resolve_attn_implementation(requested: str | None) -> str:
    """flash-attn only when asked for, installed and on a GPU; otherwise PyTorch SDPA."""
    if requested == "flash_attention_2":
        if importlib.util.find_spec("flash_attn") is None or not torch.cuda.is_available():
            warnings.warn("flash_attention_2 requested but flash-attn/CUDA is unavailable: using sdpa")
            return "sdpa"
    return requested or "sdpa"


def device() -> str:
    """Where jobs compute: the GPU when there is one (profile paper), else the CPU."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def _dtype(spec: dict) -> torch.dtype:
    return getattr(torch, spec.get("dtype", "float32"))


def build_causal_lm(spec: dict, vocab_size: int | None = None):
    """`spec` has `pretrained` (hub name or local folder) or architecture sizes for a fresh model."""
    import transformers

    attn = resolve_attn_implementation(spec.get("attn_implementation"))
    if spec.get("pretrained"):
        return transformers.AutoModelForCausalLM.from_pretrained(
            spec["pretrained"], dtype=_dtype(spec), attn_implementation=attn)
    arch = spec.get("arch", "llama")
    config_cls = getattr(transformers, ARCHS[arch])
    sizes = {k: v for k, v in spec.items() if k not in BUILD_KEYS}
    if vocab_size is not None:
        sizes["vocab_size"] = vocab_size
    config = config_cls(**sizes, attn_implementation=attn)
    model = transformers.AutoModelForCausalLM.from_config(config, dtype=_dtype(spec))
    return model


def save_checkpoint(model, path: Path | str) -> None:
    model.save_pretrained(str(path), safe_serialization=True)


def load_checkpoint(path: Path | str, attn_implementation: str | None = None):
    import transformers

    return transformers.AutoModelForCausalLM.from_pretrained(
        str(path), attn_implementation=resolve_attn_implementation(attn_implementation))


def count_parameters(model, non_embedding: bool = True) -> int:
    skip = set()
    if non_embedding:
        skip = {id(model.get_input_embeddings().weight), id(model.get_output_embeddings().weight)}
    return sum(p.numel() for p in model.parameters() if id(p) not in skip)
