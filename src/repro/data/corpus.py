"""A real text corpus without downloads: the CPython standard-library sources.

The file list is deterministic (sorted relative paths); a module goes to validation when the hash of
its path falls below `validation_fraction`, so the split does not move when files are added. The
`paper` profile names a hub dataset instead and goes through `datasets.load_dataset`; both end as a
`DatasetDict(train, validation)` with a `text` column, saved with `save_to_disk`.
"""
from __future__ import annotations

import hashlib
import sysconfig
from pathlib import Path

import numpy as np

SKIP_DIRS = {"site-packages", "test", "tests", "idlelib", "lib2to3", "__pycache__", "turtledemo"}


def stdlib_root() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def stdlib_files(root: Path | None = None) -> list[Path]:
    root = root or stdlib_root()
    return sorted((p for p in root.rglob("*.py") if not SKIP_DIRS & set(p.relative_to(root).parts)),
                  key=lambda p: p.relative_to(root).as_posix())


def is_validation(rel_path: str, fraction: float) -> bool:
    bucket = int(hashlib.sha256(rel_path.encode()).hexdigest()[:8], 16) / 16**8
    return bucket < fraction


def stdlib_corpus(train_bytes: int, validation_bytes: int, validation_fraction: float):
    """DatasetDict of stdlib modules, each split filled in file order up to its byte budget."""
    import datasets

    root = stdlib_root()
    splits = {"train": {"path": [], "text": []}, "validation": {"path": [], "text": []}}
    budget = {"train": train_bytes, "validation": validation_bytes}
    for file in stdlib_files(root):
        rel = file.relative_to(root).as_posix()
        split = "validation" if is_validation(rel, validation_fraction) else "train"
        if budget[split] <= 0:
            if all(b <= 0 for b in budget.values()):
                break
            continue
        text = file.read_text(encoding="utf-8", errors="replace")[: budget[split]]
        budget[split] -= len(text.encode())
        splits[split]["path"].append(rel)
        splits[split]["text"].append(text)
    return datasets.DatasetDict({k: datasets.Dataset.from_dict(v) for k, v in splits.items()})


def load_text_corpus(source: dict):
    """`source.kind`: `stdlib` (built here) or `hub` (`datasets.load_dataset(**source.load)`; with
    `holdout_fraction`, validation is carved out of the train split)."""
    import datasets

    if source["kind"] == "stdlib":
        return stdlib_corpus(source["train_bytes"], source["validation_bytes"],
                             source["validation_fraction"])
    loaded = datasets.load_dataset(**source["load"])
    train = loaded[source.get("train_split", "train")]
    if "holdout_fraction" in source:  # one-split corpora (OpenWebText): a seeded held-out slice
        parts = train.train_test_split(test_size=source["holdout_fraction"], seed=0)
        return datasets.DatasetDict({"train": parts["train"], "validation": parts["test"]})
    return datasets.DatasetDict({"train": train,
                                 "validation": loaded[source.get("validation_split", "validation")]})


class ByteTokenizer:
    """UTF-8 bytes as tokens: vocabulary 256, nothing to download, bits per byte come for free."""

    vocab_size = 256

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))


def tokenizer_for(spec: str):
    if spec == "bytes":
        return ByteTokenizer()
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(spec)


def encode_split(split, tokenizer) -> np.ndarray:
    """All texts of a split as one token stream (documents separated by a newline token)."""
    ids: list[int] = []
    sep = tokenizer.encode("\n")
    for text in split["text"]:
        ids.extend(tokenizer.encode(text))
        ids.extend(sep)
    return np.asarray(ids, dtype=np.int64)


def random_windows(tokens: np.ndarray, batch: int, length: int, seed: int):
    """A batch of random windows, reproducible from (seed)."""
    import torch

    rng = np.random.default_rng(seed)
    starts = rng.integers(0, len(tokens) - length - 1, size=batch)
    return torch.from_numpy(np.stack([tokens[s:s + length] for s in starts]))


def fixed_windows(tokens: np.ndarray, count: int, length: int, batch: int):
    """Evenly spaced evaluation windows, the same on every run."""
    import torch

    step = max(1, (len(tokens) - length - 1) // count)
    rows = np.stack([tokens[i * step:i * step + length] for i in range(count)])
    return [torch.from_numpy(rows[i:i + batch]) for i in range(0, count, batch)]


def save_prepared(corpus, tokenizer, out) -> dict:
    """The prepared-data folder every LM stage reads: the Arrow dataset plus token streams."""
    from repro.core.io import atomic_write_json

    corpus.save_to_disk(str(out / "dataset"))
    stats = {"vocab_size": len(tokenizer) if hasattr(tokenizer, "__len__") else tokenizer.vocab_size}
    for split in ("train", "validation"):
        tokens = encode_split(corpus[split], tokenizer)
        np.save(out / f"{split}.npy", tokens)
        stats[f"{split}_documents"] = len(corpus[split])
        stats[f"{split}_tokens"] = int(len(tokens))
    atomic_write_json(out / "meta.json", stats)
    return stats


def load_tokens(data_dir, split: str) -> np.ndarray:
    return np.load(Path(data_dir) / f"{split}.npy")


def prepare(ctx) -> dict:
    """The data stage of every paper on the text corpus: `data.source` read or built, then tokenized
    with `data.tokenizer` and saved (`save_prepared`)."""
    p = ctx.params["data"]
    return save_prepared(load_text_corpus(p["source"]), tokenizer_for(p["tokenizer"]), ctx.out)


def validation_windows(data_dir, windows: int, seq_len: int, batch_size: int, device: str = "cpu"):
    """The fixed held-out evaluation batches of a prepared corpus, on `device`."""
    tokens = load_tokens(data_dir, "validation")
    return [b.to(device) for b in fixed_windows(tokens, windows, seq_len, batch_size)]
