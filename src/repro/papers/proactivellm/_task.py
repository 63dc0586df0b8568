"""What the proactivellm stages share: the prepared task, its tokenizer, examples as source units of
token ids with per-token oracle points, and training batches for one masked forward pass."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from repro.core.io import atomic_write_json, read_json
from repro.streaming.masks import group_position_ids, streaming_mask

SPECIALS = ("<pad>", "<sep>", "<eos>")


class WordTokenizer:
    """Word-level vocabulary of a generated task: one token per word (source unit)."""

    pad_id, sep_id, eos_id = 0, 1, 2

    def __init__(self, words: list[str]):
        self.itos = [*SPECIALS, *words]
        self.stoi = {w: i for i, w in enumerate(self.itos)}

    def __len__(self) -> int:
        return len(self.itos)

    def unit(self, word: str, first: bool) -> list[int]:
        return [self.stoi[word]]

    def decode(self, ids: list[int]) -> str:
        return " ".join(self.itos[i] for i in ids if i >= len(SPECIALS))


class HubTokenizer:
    """A hub (or local) tokenizer: a word may be several tokens; the target starts after `sep_token`
    (one token) and ends with the tokenizer's EOS."""

    def __init__(self, name: str, sep_token: str):
        from transformers import AutoTokenizer

        self.tok = AutoTokenizer.from_pretrained(name)
        ids = self.tok.encode(sep_token, add_special_tokens=False)
        if len(ids) != 1:
            raise ValueError(f"sep_token {sep_token!r} must be one token of {name}, got {ids}")
        self.sep_id, self.eos_id = ids[0], self.tok.eos_token_id
        self.pad_id = self.tok.pad_token_id if self.tok.pad_token_id is not None else self.eos_id

    def __len__(self) -> int:
        return len(self.tok)

    def unit(self, word: str, first: bool) -> list[int]:
        return self.tok.encode(word if first else " " + word, add_special_tokens=False)

    def decode(self, ids: list[int]) -> str:
        return self.tok.decode(ids, skip_special_tokens=True).strip()


@dataclass
class Example:
    units: list[list[int]]  # source units (words) as token ids
    target: list[int]       # reference target tokens (no start token, no EOS)
    oracle: list[int]       # per target row (each target token, then EOS): units needed, monotone
    reference: str

    @property
    def rows(self) -> int:
        return len(self.target) + 1


def encode(row: dict, tok, eos_full_source: bool) -> Example:
    units = [tok.unit(w, i == 0) for i, w in enumerate(row["source"])]
    target, need = [], []
    for i, (w, n) in enumerate(zip(row["target"], row["oracle"])):
        ids = tok.unit(w, i == 0)
        target += ids
        need += [min(int(n), len(units))] * len(ids)
    need.append(len(units) if eos_full_source or not need else need[-1])
    oracle, top = [], 0
    for n in need:  # the target is written in order: a token can wait for what an earlier one needed
        top = max(top, n)
        oracle.append(top)
    return Example(units, target, oracle, tok.decode(target))


class Task:
    """The data stage's output for one task: splits, tokenizer, encoded examples."""

    def __init__(self, data_dir: Path, eos_full_source: bool):
        import datasets

        data_dir = Path(data_dir)
        self.meta = read_json(data_dir / "meta.json")
        self.splits = datasets.load_from_disk(str(data_dir / "dataset"))
        if self.meta["tokenizer"] == "words":
            self.tokenizer = WordTokenizer(json.loads((data_dir / "vocab.json").read_text()))
        else:
            self.tokenizer = HubTokenizer(self.meta["tokenizer"], self.meta["sep_token"])
        self.eos_full_source = eos_full_source

    def examples(self, split: str, limit: int | None = None) -> list[Example]:
        ds = self.splits[split]
        if limit is not None:
            ds = ds.select(range(min(limit, len(ds))))
        return [encode(r, self.tokenizer, self.eos_full_source) for r in ds]


def save_vocab(splits, path: Path) -> int:
    words = sorted({w for ds in splits.values() for col in ("source", "target") for row in ds[col] for w in row})
    atomic_write_json(path, words)
    return len(words) + len(SPECIALS)


def batch(examples: list[Example], visibility: list[list[int]], tok, target_offset: int = 0) -> dict:
    """One masked forward pass for training / teacher-forced scoring. Row layout [source | target]:
    target rows are [start, y_1 .. y_T] and predict [y_1 .. y_T, EOS]; row r of example b sees the
    first visibility[b][r] source units (converted to tokens here). Also returns per-row oracle
    points and visibilities in units (-1 on padding) for labels that need them."""
    b = len(examples)
    src_w = max(sum(map(len, e.units)) for e in examples)
    tgt_w = max(e.rows for e in examples)
    ids = torch.full((b, src_w + tgt_w), tok.pad_id, dtype=torch.long)
    labels = torch.full((b, src_w + tgt_w), -100, dtype=torch.long)
    vis_tok = torch.zeros(b, tgt_w, dtype=torch.long)
    vis_units = torch.full((b, tgt_w), -1, dtype=torch.long)
    oracle = torch.full((b, tgt_w), -1, dtype=torch.long)
    for i, (e, vis) in enumerate(zip(examples, visibility)):
        flat = [t for u in e.units for t in u]
        ids[i, :len(flat)] = torch.tensor(flat)
        ids[i, src_w:src_w + e.rows] = torch.tensor([tok.sep_id, *e.target])
        labels[i, src_w:src_w + e.rows] = torch.tensor([*e.target, tok.eos_id])
        ends = torch.tensor([len(u) for u in e.units]).cumsum(0)
        vis_tok[i, :e.rows] = ends[torch.tensor(vis) - 1]
        vis_units[i, :e.rows] = torch.tensor(vis)
        oracle[i, :e.rows] = torch.tensor(e.oracle)
    src_len = torch.tensor([sum(map(len, e.units)) for e in examples])
    tgt_len = torch.tensor([e.rows for e in examples])
    return {"input_ids": ids, "labels": labels,
            "attention_mask": streaming_mask(src_len, tgt_len, vis_tok, src_w, tgt_w),
            "position_ids": group_position_ids(b, src_w, tgt_w, target_offset),
            "visibility": vis_units, "oracle": oracle, "src_width": src_w}
