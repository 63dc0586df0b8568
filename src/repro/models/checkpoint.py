"""The one checkpoint format of the project: a folder with config.json and model.safetensors.

transformers' `save_pretrained` writes the same two files, so a hub-style causal LM and a model of
our own (a pruned executor, a tracker, a decision head) are stored alike; nothing is pickled.
"""
from __future__ import annotations

import json
from pathlib import Path

CONFIG = "config.json"
WEIGHTS = "model.safetensors"


def save(folder: Path | str, config: dict, state: dict) -> None:
    """config.json (plain JSON: sizes, structure, settings) + model.safetensors (the tensors)."""
    from safetensors.torch import save_file

    from repro.core.io import atomic_write_json

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_json(folder / CONFIG, config)
    tensors, seen = {}, set()
    for key, value in state.items():
        value = value.detach().contiguous().cpu()
        if value.data_ptr() in seen:  # tied weights: safetensors stores each tensor on its own
            value = value.clone()
        seen.add(value.data_ptr())
        tensors[key] = value
    save_file(tensors, str(folder / WEIGHTS))


def load(folder: Path | str, device: str = "cpu") -> tuple[dict, dict]:
    """(config, state dict) of a checkpoint folder; a missing file is named in the error."""
    from safetensors.torch import load_file

    folder = Path(folder)
    for name in (CONFIG, WEIGHTS):
        if not (folder / name).is_file():
            raise FileNotFoundError(f"checkpoint {folder}: {name} is missing (expected {CONFIG} + {WEIGHTS})")
    return json.loads((folder / CONFIG).read_text()), load_file(str(folder / WEIGHTS), device=device)
