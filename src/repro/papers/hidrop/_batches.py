"""The scene VQA splits as tensors, and the batches that pre-training, fine-tuning, evaluation and the
layer analysis share. Questions are right-padded word ids; `last` is each question's last token
(the query row: the token just before the one-token answer span). Captions (pre-training) are
written from each row's scene: its objects in reading order, "<size> <colour> <shape>" each."""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from repro.data.scenes import Vocab, images_to_tensor


class HubWords:
    """A hub tokenizer behind Vocab's interface (the `paper` profile's LLM keeps its own vocabulary);
    an answer word is predicted as its first sub-token."""

    def __init__(self, name: str):
        from transformers import AutoTokenizer

        self.tok = AutoTokenizer.from_pretrained(name)
        first = lambda *ids: next(i for i in ids if i is not None)  # noqa: E731
        self.eos_id = first(self.tok.eos_token_id, self.tok.unk_token_id, 0)
        self.bos_id = first(self.tok.bos_token_id, self.eos_id)
        self.pad_id = first(self.tok.pad_token_id, self.eos_id)

    def __len__(self) -> int:
        return len(self.tok)

    def encode(self, text: str) -> list[int]:
        return self.tok(" " + text, add_special_tokens=False)["input_ids"]

    def answer_id(self, word: str) -> int:
        return self.encode(word)[0]


def words(model_spec: dict):
    """The scene vocabulary, or the hub tokenizer `model.tokenizer` names (profile paper)."""
    return HubWords(model_spec["tokenizer"]) if model_spec.get("tokenizer") else Vocab()


def device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


@dataclass
class Split:
    images: np.ndarray  # uint8 [N, H, W, 3]
    text: torch.Tensor  # [N, T] question ids, right-padded
    last: torch.Tensor  # [N] index of each question's last token
    answer: torch.Tensor  # [N] answer id
    kind: list[str]
    caption: torch.Tensor  # [N, C] caption ids + <eos>, right-padded with -100 in `caption_labels`
    caption_labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.kind)

    def vqa(self, idx) -> dict:
        idx = torch.as_tensor(idx)
        return {"images": images_to_tensor(self.images[idx.numpy()]), "text": self.text[idx],
                "last": self.last[idx], "answer": self.answer[idx]}

    def captions(self, idx) -> dict:
        idx = torch.as_tensor(idx)
        return {"images": images_to_tensor(self.images[idx.numpy()]), "ids": self.caption[idx],
                "labels": self.caption_labels[idx]}


def caption_text(scene: list[dict]) -> str:
    """The scene's objects in reading order (rows top to bottom, then left to right)."""
    objs = sorted(scene, key=lambda o: (round(o["y"] * 3 - 0.5), o["x"]))
    return " ".join(f"{o['size']} {o['colour']} {o['shape']}" for o in objs)


def _pad(seqs: list[list[int]], value: int) -> torch.Tensor:
    out = torch.full((len(seqs), max(map(len, seqs))), value, dtype=torch.long)
    for i, s in enumerate(seqs):
        out[i, :len(s)] = torch.tensor(s)
    return out


def load_split(data, name: str, vocab) -> Split:
    import datasets

    ds = datasets.load_from_disk(str(data / "scenes"))[name].with_format("numpy")
    rows = ds[:]
    questions = [vocab.encode(str(q)) for q in rows["question"]]
    captions = [vocab.encode(caption_text(json.loads(str(s)))) + [vocab.eos_id] for s in rows["scene"]]
    answers = [vocab.answer_id(str(a)) if isinstance(vocab, HubWords) else vocab.index[str(a)] for a in rows["answer"]]
    return Split(images=np.asarray(rows["image"]), text=_pad(questions, vocab.pad_id),
                 last=torch.tensor([len(q) - 1 for q in questions]), answer=torch.tensor(answers),
                 kind=[str(k) for k in rows["kind"]], caption=_pad(captions, vocab.pad_id),
                 caption_labels=_pad(captions, -100))


def sampler(split: Split, batch_size: int, stream: tuple[int, ...], make: Callable) -> Callable[[int], dict]:
    """next_batch(step): rows drawn from the random `stream` (seed entropy) and the step alone, so a
    step's batch does not depend on what ran before."""

    def next_batch(step: int) -> dict:
        rng = np.random.default_rng([*stream, step])
        return make(rng.choice(len(split), size=batch_size, replace=False))

    return next_batch


def chunks(n: int, size: int) -> list[np.ndarray]:
    return [np.arange(i, min(n, i + size)) for i in range(0, n, size)]
