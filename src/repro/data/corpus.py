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


def _line_set(text: str) -> set[str]:
    """The lines that identify a file's content: stripped, at least 12 characters (shorter ones,
    `return None`, `else:`, are shared by unrelated modules)."""
    return {line for raw in text.splitlines() if len(line := raw.strip()) >= 12}


def near_duplicates(candidates: dict[str, str], reference: dict[str, str], containment: float) -> dict:
    """Candidates whose identifying lines are at least `containment` contained in one reference
    file: {candidate path: (reference path, share)}. An inverted line index keeps it linear."""
    index: dict[str, list[str]] = {}
    for path, text in reference.items():
        for line in _line_set(text):
            index.setdefault(line, []).append(path)
    found = {}
    for path, text in candidates.items():
        lines = _line_set(text)
        counts: dict[str, int] = {}
        for line in lines:
            for ref in index.get(line, ()):
                counts[ref] = counts.get(ref, 0) + 1
        if lines and counts:
            ref, shared = max(counts.items(), key=lambda kv: (kv[1], kv[0]))
            if shared / len(lines) >= containment:
                found[path] = (ref, round(shared / len(lines), 3))
    return found


def stdlib_corpus(train_bytes: int, validation_bytes: int, validation_fraction: float,
                  dedup_containment: float):
    """DatasetDict of stdlib modules, each split filled in file order up to its byte budget.

    Validation leaves out near-copies of the training text (the stdlib's charmap codec tables,
    cp858 vs cp850; __phello__/spam.py = __phello__/__init__.py): a held-out module goes when at
    least `dedup_containment` of its identifying lines occur in one training file. The rule and
    the excluded modules are returned with the splits (provenance of the data stage)."""
    import datasets

    root = stdlib_root()
    texts = {"train": {}, "validation": {}}
    for file in stdlib_files(root):
        rel = file.relative_to(root).as_posix()
        texts["validation" if is_validation(rel, validation_fraction) else "train"][rel] = \
            file.read_text(encoding="utf-8", errors="replace")
    splits = {}
    excluded = {}
    for split, budget in (("train", train_bytes), ("validation", validation_bytes)):
        splits[split] = {"path": [], "text": []}
        for rel, text in texts[split].items():
            if budget <= 0:
                break
            if split == "validation":
                dup = near_duplicates({rel: text}, train_used, dedup_containment)
                if dup:
                    excluded[rel] = {"near_copy_of": dup[rel][0], "containment": dup[rel][1]}
                    continue
            text = text[:budget]
            budget -= len(text.encode())
            splits[split]["path"].append(rel)
            splits[split]["text"].append(text)
        if split == "train":
            train_used = dict(zip(splits["train"]["path"], splits["train"]["text"]))
    dedup = {"rule": "drop a validation module when >= dedup_containment of its distinct stripped "
                     "lines of >= 12 characters occur in one training module",
             "dedup_containment": dedup_containment, "excluded": excluded}
    return datasets.DatasetDict({k: datasets.Dataset.from_dict(v) for k, v in splits.items()}), dedup


def load_text_corpus(source: dict):
    """(DatasetDict, validation dedup record). `source.kind`: `stdlib` (built here) or `hub`
    (`datasets.load_dataset(**source.load)`; with `holdout_fraction`, validation is carved out of
    the train split)."""
    import datasets

    if source["kind"] == "stdlib":
        return stdlib_corpus(source["train_bytes"], source["validation_bytes"],
                             source["validation_fraction"], source["dedup_containment"])
    loaded = datasets.load_dataset(**source["load"])
    train = loaded[source.get("train_split", "train")]
    if "holdout_fraction" in source:  # one-split corpora (OpenWebText): a seeded held-out slice
        parts = train.train_test_split(test_size=source["holdout_fraction"], seed=0)
        corpus = datasets.DatasetDict({"train": parts["train"], "validation": parts["test"]})
    else:
        corpus = datasets.DatasetDict({"train": train,
                                       "validation": loaded[source.get("validation_split", "validation")]})
    return corpus, {"rule": "none: the hub dataset's own split"}


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


def save_prepared(corpus, tokenizer, out, dedup: dict) -> dict:
    """The prepared-data folder every LM stage reads: the Arrow dataset plus token streams."""
    from repro.core.io import atomic_write_json

    corpus.save_to_disk(str(out / "dataset"))
    stats = {"vocab_size": len(tokenizer) if hasattr(tokenizer, "__len__") else tokenizer.vocab_size,
             "validation_dedup": {**dedup, "excluded_count": len(dedup.get("excluded", {}))}}
    for split in ("train", "validation"):
        tokens = encode_split(corpus[split], tokenizer)
        np.save(out / f"{split}.npy", tokens)
        stats[f"{split}_documents"] = len(corpus[split])
        stats[f"{split}_tokens"] = int(len(tokens))
    atomic_write_json(out / "meta.json", stats)
    return stats


def load_tokens(data_dir, split: str) -> np.ndarray:
    return np.load(Path(data_dir) / f"{split}.npy")


def unigram_entropy(data_dir, split: str = "validation") -> float:
    """Entropy (nats per token) of a split's own token frequencies: the loss of the best
    context-free model of that text, the level a language model must clearly beat to have learned."""
    counts = np.bincount(load_tokens(data_dir, split))
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def prepare(ctx) -> dict:
    """The data stage of every paper on the text corpus: `data.source` read or built, then tokenized
    with `data.tokenizer` and saved (`save_prepared`)."""
    p = ctx.params["data"]
    corpus, dedup = load_text_corpus(p["source"])
    return save_prepared(corpus, tokenizer_for(p["tokenizer"]), ctx.out, dedup)


def validation_windows(data_dir, windows: int, seq_len: int, batch_size: int, device: str = "cpu"):
    """The fixed held-out evaluation batches of a prepared corpus, on `device`."""
    tokens = load_tokens(data_dir, "validation")
    return [b.to(device) for b in fixed_windows(tokens, windows, seq_len, batch_size)]
