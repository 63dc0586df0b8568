"""The reranker's vision tower and its alignment (the spec's turn-3 amendment).

- `token_labels`: per visual token, the object whose centre lies in its patch (present, shape,
  colour, size, centre offset).
- `TowerProbe`: linear read-outs of those labels on the MLLM's vision tower; trained with the tower
  (stage `tower`), so the tower knows objects, then the tower is frozen.
- `phrase_ids` / `alignment_targets` / `Aligner`: the projector mapped toward the sum of the LLM's
  word embeddings of each token's "size colour shape" phrase (stage `align`, LLaVA's stage 1
  analogue), so matching a query word to the image becomes close to lexical.
"""
from __future__ import annotations

from types import SimpleNamespace

import torch
import torch.nn.functional as F
from torch import nn

from repro.data.scenes import COLOURS, SHAPES, SIZES

ATTRIBUTES = {"shape": SHAPES, "colour": tuple(COLOURS), "size": tuple(SIZES)}


def token_labels(scenes: list[list[dict]], grid: int) -> dict:
    """Per visual token (row-major patches of a grid x grid image), the object whose centre lies in
    its patch: `present` [B, N] bool, the index of its shape / colour / size in ATTRIBUTES [B, N]
    (-100 where none), and `centre` [B, N, 2], its offset from the patch centre in patch sides."""
    b, n = len(scenes), grid * grid
    out = {a: torch.full((b, n), -100, dtype=torch.long) for a in ATTRIBUTES}
    present, centre = torch.zeros(b, n, dtype=torch.bool), torch.zeros(b, n, 2)
    for i, scene in enumerate(scenes):
        for o in scene:
            col, row = min(int(o["x"] * grid), grid - 1), min(int(o["y"] * grid), grid - 1)
            cell = row * grid + col
            present[i, cell] = True
            centre[i, cell] = torch.tensor([o["x"] * grid - col - 0.5, o["y"] * grid - row - 0.5])
            for a, values in ATTRIBUTES.items():
                out[a][i, cell] = values.index(o[a])
    return {"present": present, "centre": centre, **out}


class TowerProbe(nn.Module):
    """Linear read-outs of every visual token's object (present, shape, colour, size, centre) on the
    MLLM's vision tower: trained together with the tower on `token_labels`, so the tower knows
    objects (a stand-in for a CLIP-style tower pre-trained at scale); the tower is then frozen."""

    def __init__(self, model):
        super().__init__()
        d = model.vision.dim
        self.model = model
        self.heads = nn.ModuleDict({"present": nn.Linear(d, 2), "centre": nn.Linear(d, 2),
                                    **{a: nn.Linear(d, len(v)) for a, v in ATTRIBUTES.items()}})

    def predict(self, images) -> dict:
        x = self.model.vision_features(images)
        return {k: h(x) for k, h in self.heads.items()}

    def forward(self, images, present, centre, **attributes):
        out = self.predict(images)
        loss = F.cross_entropy(out["present"].flatten(0, 1), present.long().flatten())
        loss = loss + F.mse_loss(out["centre"][present], centre[present])
        for a in ATTRIBUTES:
            loss = loss + F.cross_entropy(out[a].flatten(0, 1), attributes[a].flatten(), ignore_index=-100)
        return SimpleNamespace(loss=loss)


def phrase_ids(labels: dict, words: dict[str, list[int]]) -> torch.Tensor:
    """[B, N, len(ATTRIBUTES)] word ids of each token's "size colour shape" phrase (`words[a][i]`: the
    id of the i-th value of attribute a); -1 where the token holds no object."""
    order = ("size", "colour", "shape")
    ids = torch.stack([torch.tensor(words[a])[labels[a].clamp(min=0)] for a in order], -1)
    return torch.where(labels["present"][..., None], ids, -1)


def alignment_targets(model, ids: torch.Tensor, empty: int) -> torch.Tensor:
    """What the projector is aligned to (LLaVA's stage 1 analogue): the sum of the LLM's word
    embeddings of the token's object phrase, or the embedding of `empty` where it holds none, so a
    query word finds its object's tokens by a near-lexical match."""
    table = model.decoder.embed.weight.detach()
    phrase = table[ids.clamp(min=0)].sum(-2)
    return torch.where(ids[..., :1] >= 0, phrase, table[empty])


def alignment_loss(visual: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Squared error relative to the targets' power (the word embeddings are small at initialisation)."""
    return ((visual - target) ** 2).sum(-1).mean() / (target ** 2).sum(-1).mean()


class Aligner(nn.Module):
    """The alignment stage's loss: only the projector trains (the tower is frozen, the word
    embeddings are the targets)."""

    def __init__(self, model, words: dict[str, list[int]], empty: int):
        super().__init__()
        self.model, self.words, self.empty = model, words, empty

    def forward(self, images, **labels):
        target = alignment_targets(self.model, phrase_ids(labels, self.words), self.empty)
        return SimpleNamespace(loss=alignment_loss(self.model.visual_tokens(images), target))
