"""UTPTrack: unified, attention-guided, token-type-aware pruning inside a one-stream tracker.

The tracker runs one ViT over [search x, static template sz, dynamic template dz]. In chosen blocks,
after attention and before the MLP, it removes tokens in the order
  CE  (search tokens),  DTE (dynamic-template tokens),  STE (static-template tokens).
Every module scores its candidates by the softmax attention probabilities *of that block* from one
query, the static template's centre token, averaged over heads, and keeps ceil(keep_ratio * N) of
them. STE adds +1 to the centre token itself (so the query is never removed) and, when token-type
aware, the fraction of each template patch that the target box covers (soft foreground). Indices
are global (positions in the un-pruned input), so after the last block the surviving search tokens
are scattered back to their places and the removed ones are zeros: the centre head sees the full
search map. Templates are not restored. While fine-tuning, the keep ratios warm up: 1.0 until a
start point, then a cosine down to the target.

Head and loss (our choice; the paper uses SUTrack's): a small conv centre head on the restored
search map predicts a centre heatmap, box size and sub-cell offset; loss = focal (CenterNet, on a
Gaussian around the target cell) + 5 x L1 + 2 x GIoU on the box read at the target's cell.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from repro.models import checkpoint
from repro.models.centre_head import (CentreHead, box_at, centre_cells, cxcywh_to_xyxy, decode, focal_loss,
                                      gaussian_heatmap, giou, hann_window)
from repro.models.vit import ViT, build_vit, resize_grid

MODULES = ("ce", "dte", "ste")  # the order they act in within one block


# ---------------------------------------------------------------- pruning configuration


@dataclass(frozen=True)
class Pruning:
    """Per module: the blocks it acts in and its target keep ratio; token_type adds the STE bonus."""
    blocks: dict[str, tuple[int, ...]] = field(default_factory=dict)
    keep: dict[str, float] = field(default_factory=dict)
    token_type: bool = False

    @classmethod
    def from_variant(cls, variant: dict) -> "Pruning":
        blocks = {m: tuple(variant[m]["blocks"]) for m in MODULES if m in variant}
        keep = {m: float(variant[m]["keep"]) for m in MODULES if m in variant}
        return cls(blocks, keep, bool(variant.get("token_type", False)))

    def ratio(self, module: str, block: int, warm: float) -> float:
        """Keep ratio of `module` in `block` at warm-up weight `warm` (1: keep all, 0: target)."""
        if block not in self.blocks.get(module, ()):
            return 1.0
        target = self.keep[module]
        return target + (1.0 - target) * warm

    @property
    def active(self) -> bool:
        return bool(self.blocks)


def keep_count(n: int, ratio: float) -> int:
    """ceil(ratio * n) as in the public code; rounded first so 0.6 * 25 is 15, not 16 by float noise."""
    return min(n, math.ceil(round(ratio * n, 6)))


def warmup_weight(step: int, steps: int, start: float, end: float) -> float:
    """Keep-rate warm-up over fine-tuning: 1 until `start` x steps, cosine to 0 at `end` x steps."""
    s0, s1 = start * steps, end * steps
    if step < s0:
        return 1.0
    if step >= s1:
        return 0.0
    return 0.5 * (1.0 + math.cos(math.pi * (step - s0) / (s1 - s0)))


# ---------------------------------------------------------------- scoring and selection


def query_scores(probs: torch.Tensor, query: torch.Tensor, start: int, count: int) -> torch.Tensor:
    """Head-averaged attention from each sample's query position to tokens [start, start + count):
    probs [B, H, L, L], query [B] -> [B, count]."""
    rows = probs[torch.arange(probs.shape[0]), :, query]  # [B, H, L]
    return rows[:, :, start:start + count].mean(1)


def ste_scores(probs: torch.Tensor, query: torch.Tensor, start: int, centre: torch.Tensor,
               foreground: torch.Tensor, token_type: bool) -> torch.Tensor:
    """Static-template scores: attention + 1 at the centre token (+ soft foreground if token-type aware)."""
    scores = query_scores(probs, query, start, centre.shape[1]) + centre.float()
    return scores + foreground if token_type else scores


def select(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Positions of the k highest scores per row, in ascending position order."""
    return scores.topk(k, dim=1).indices.sort(dim=1).values


def take(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """x [B, N, ...] at positions idx [B, k] -> [B, k, ...]."""
    return x.gather(1, idx.view(*idx.shape, *([1] * (x.dim() - 2))).expand(-1, -1, *x.shape[2:]))


@dataclass
class Tokens:
    """The one-stream sequence between blocks: three groups, their global indices, and the static
    template's centre (query) flag and foreground fraction, carried along as STE removes tokens."""
    x: torch.Tensor
    s: torch.Tensor
    d: torch.Tensor
    idx_x: torch.Tensor
    idx_s: torch.Tensor
    idx_d: torch.Tensor
    centre: torch.Tensor
    fg: torch.Tensor

    def cat(self) -> torch.Tensor:
        return torch.cat([self.x, self.s, self.d], dim=1)

    def split(self, seq: torch.Tensor) -> None:
        nx, ns = self.x.shape[1], self.s.shape[1]
        self.x, self.s, self.d = seq[:, :nx], seq[:, nx:nx + ns], seq[:, nx + ns:]

    @property
    def counts(self) -> tuple[int, int, int]:
        return self.x.shape[1], self.s.shape[1], self.d.shape[1]

    def query(self) -> torch.Tensor:
        """Sequence position of each sample's static-template centre token."""
        return self.x.shape[1] + self.centre.float().argmax(1)


def block_counts(pruning: Pruning, block: int, counts: tuple[int, int, int], warm: float) -> tuple[int, int, int]:
    """(search, static, dynamic) tokens left after `block` prunes."""
    return tuple(keep_count(n, pruning.ratio(m, block, warm)) for m, n in zip(("ce", "ste", "dte"), counts))


def prune(t: Tokens, probs: torch.Tensor, pruning: Pruning, block: int, warm: float) -> Tokens:
    """CE, DTE, STE of one block, all scored from this block's probabilities over the pre-pruning
    layout [x, s, d] (so one module's removals never shift another's positions)."""
    nx, ns, nd = t.counts
    kx, ks, kd = block_counts(pruning, block, (nx, ns, nd), warm)
    q = t.query()
    out = Tokens(t.x, t.s, t.d, t.idx_x, t.idx_s, t.idx_d, t.centre, t.fg)
    if kx < nx:  # CE
        keep = select(query_scores(probs, q, 0, nx), kx)
        out.x, out.idx_x = take(t.x, keep), take(t.idx_x, keep)
    if kd < nd:  # DTE
        keep = select(query_scores(probs, q, nx + ns, nd), kd)
        out.d, out.idx_d = take(t.d, keep), take(t.idx_d, keep)
    if ks < ns:  # STE
        keep = select(ste_scores(probs, q, nx, t.centre, t.fg, pruning.token_type), ks)
        out.s, out.idx_s = take(t.s, keep), take(t.idx_s, keep)
        out.centre, out.fg = take(t.centre, keep), take(t.fg, keep)
    return out


def restore_search(x: torch.Tensor, idx_x: torch.Tensor, n: int) -> torch.Tensor:
    """Kept search tokens [B, k, D] back at their global positions of an [B, n, D] map; zeros elsewhere."""
    full = x.new_zeros(x.shape[0], n, x.shape[2])
    return full.scatter(1, idx_x.unsqueeze(-1).expand(-1, -1, x.shape[2]), x)


# ---------------------------------------------------------------- boxes, targets, losses


def foreground_fraction(boxes: torch.Tensor, size: int, patch: int) -> torch.Tensor:
    """Fraction of each patch covered by the box: boxes [B, 4] (x, y, w, h in crop pixels) -> [B, g*g]."""
    g = size // patch
    lo = torch.arange(g, dtype=boxes.dtype) * patch
    ox = ((torch.minimum(lo + patch, (boxes[:, 0] + boxes[:, 2])[:, None]) - torch.maximum(lo, boxes[:, 0:1]))
          .clamp(min=0))
    oy = ((torch.minimum(lo + patch, (boxes[:, 1] + boxes[:, 3])[:, None]) - torch.maximum(lo, boxes[:, 1:2]))
          .clamp(min=0))
    return (oy[:, :, None] * ox[:, None, :]).reshape(boxes.shape[0], g * g) / patch**2


@dataclass
class Output:
    score: torch.Tensor
    size: torch.Tensor
    offset: torch.Tensor
    counts: list[tuple[int, int, int]]  # (search, static, dynamic) tokens after each block
    processed: list[tuple[int, int]]  # tokens each block's attention and MLP ran on (per sample)
    loss: torch.Tensor | None = None
    parts: dict | None = None


# ---------------------------------------------------------------- the tracker


class OneStreamTracker(nn.Module):
    def __init__(self, vit: ViT, search_size: int, template_size: int, head_channels: int,
                 loss_weights: dict | None = None, grid_embed: torch.Tensor | None = None):
        super().__init__()
        p, dim = vit.config["patch_size"], vit.dim
        if search_size % p or template_size % p:
            raise ValueError(f"crop sizes {search_size}/{template_size} must be multiples of the patch {p}")
        self.vit = vit
        self.search_size, self.template_size, self.patch = search_size, template_size, p
        self.gx, self.gz = search_size // p, template_size // p
        self.head_channels = head_channels
        self.loss_weights = loss_weights or {"focal": 1.0, "l1": 5.0, "giou": 2.0}
        if grid_embed is not None:  # pretrained grid resized to ours; both templates share one grid
            self.pos_search = nn.Parameter(resize_grid(grid_embed, self.gx))
            self.pos_template = nn.Parameter(resize_grid(grid_embed, self.gz))
        else:
            self.pos_search = nn.Parameter(torch.randn(self.gx**2, dim) * 0.02)
            self.pos_template = nn.Parameter(torch.randn(self.gz**2, dim) * 0.02)
        # token-type embeddings: search, template foreground, template background (soft mix)
        self.type_embed = nn.Parameter(torch.randn(3, dim) * 0.02)
        self.head = CentreHead(dim, head_channels)
        self.pruning = Pruning()
        self.warm = 0.0  # keep-rate warm-up weight, set by the fine-tuning loop
        self.register_buffer("window", hann_window(self.gx), persistent=False)

    def config(self) -> dict:
        return {"vit": self.vit.config, "search_size": self.search_size, "template_size": self.template_size,
                "head_channels": self.head_channels, "loss_weights": self.loss_weights}

    def embed_template(self, image: torch.Tensor, fg: torch.Tensor) -> torch.Tensor:
        t_fg, t_bg = self.type_embed[1], self.type_embed[2]
        kind = fg[..., None] * t_fg + (1 - fg[..., None]) * t_bg
        return self.vit.patch_embed(image) + self.pos_template + kind

    def encode(self, search, static, dynamic, fg_static, fg_dynamic) -> tuple[torch.Tensor, list, list]:
        """Backbone with pruning; returns the restored search map [B, D, gx, gx], the tokens left per
        group after each block, and the lengths of the sequences each block's attention and MLP ran on."""
        B = search.shape[0]
        nx, nz = self.gx**2, self.gz**2
        centre = torch.zeros(B, nz, dtype=torch.bool, device=search.device)
        centre[:, nz // 2] = True  # the static template's centre token: the pruning query
        ar = lambda n: torch.arange(n, device=search.device).expand(B, n)  # noqa: E731
        t = Tokens(x=self.vit.patch_embed(search) + self.pos_search + self.type_embed[0],
                   s=self.embed_template(static, fg_static), d=self.embed_template(dynamic, fg_dynamic),
                   idx_x=ar(nx), idx_s=ar(nz), idx_d=ar(nz), centre=centre, fg=fg_static)
        counts, processed = [], []
        for i, blk in enumerate(self.vit.blocks):
            prunes = block_counts(self.pruning, i, t.counts, self.warm) != t.counts
            seq = t.cat()
            attended, probs = blk.attend(seq, need_probs=prunes)
            t.split(attended)
            if prunes:  # after attention, before this block's MLP
                t = prune(t, probs, self.pruning, i, self.warm)
            seq_mlp = t.cat()
            t.split(blk.feed_forward(seq_mlp))
            counts.append(t.counts)
            processed.append((seq.shape[1], seq_mlp.shape[1]))
        x = restore_search(self.vit.norm(t.x), t.idx_x, nx)
        return x.transpose(1, 2).reshape(B, -1, self.gx, self.gx), counts, processed

    def forward(self, search, static, dynamic, fg_static, fg_dynamic, target=None) -> Output:
        fmap, counts, processed = self.encode(search, static, dynamic, fg_static, fg_dynamic)
        score, size, offset = self.head(fmap)
        out = Output(score, size, offset, counts, processed)
        if target is not None:
            out.loss, out.parts = self.loss(out, target)
        return out

    def loss(self, out: Output, target: torch.Tensor):
        """target: normalised (cx, cy, w, h) [B, 4] in the search crop."""
        heat = gaussian_heatmap(target, self.gx)
        box = box_at(out.size, out.offset, centre_cells(target, self.gx))
        g, iou = giou(cxcywh_to_xyxy(box), cxcywh_to_xyxy(target))
        parts = {"focal": focal_loss(out.score, heat), "l1": F.l1_loss(box, target),
                 "giou": (1 - g).mean()}
        w = self.loss_weights
        total = sum(w[k] * v for k, v in parts.items())
        return total, {**{k: v.item() for k, v in parts.items()}, "iou": iou.mean().item()}

    def boxes(self, out: Output):
        """Normalised (cx, cy, w, h) boxes and confidences, Hann-windowed as at test time."""
        return decode(out.score, out.size, out.offset, self.window)

    @torch.no_grad()
    def predict(self, search, static, dynamic, fg_static, fg_dynamic):
        return self.boxes(self(search, static, dynamic, fg_static, fg_dynamic))


def build_tracker(model: dict, crops: dict, loss_weights: dict | None = None) -> OneStreamTracker:
    vit, grid = build_vit(model)
    return OneStreamTracker(vit, crops["search_size"], crops["template_size"], model["head_channels"],
                            loss_weights, grid)


def save_tracker(model: OneStreamTracker, folder: Path) -> None:
    checkpoint.save(folder, model.config(), model.state_dict())


def load_tracker(folder: Path) -> OneStreamTracker:
    cfg, state = checkpoint.load(folder)
    model = OneStreamTracker(ViT(**cfg["vit"]), cfg["search_size"], cfg["template_size"], cfg["head_channels"],
                             cfg["loss_weights"])
    model.load_state_dict(state)
    return model.eval()


# ---------------------------------------------------------------- analytic cost


def token_trace(pruning: Pruning, layers: int, nx: int, nz: int) -> list[dict]:
    """Per block at the target keep ratios: tokens entering attention and tokens left for the MLP."""
    counts, out = (nx, nz, nz), []
    for i in range(layers):
        after = block_counts(pruning, i, counts, 0.0)
        out.append({"in": sum(counts), "out": sum(after), "search": after[0], "static": after[1],
                    "dynamic": after[2]})
        counts = after
    return out


def macs(trace: list[dict], vit_cfg: dict, nx: int, nz: int, head_channels: int) -> dict:
    """Multiply-accumulates of one forward: patch embedding, per block qkv/proj and attention on the
    tokens entering it, MLP on the tokens left after pruning, and the centre head."""
    d, hidden, p = vit_cfg["hidden_size"], vit_cfg["intermediate_size"], vit_cfg["patch_size"]
    embed = (nx + 2 * nz) * 3 * p * p * d
    blocks = sum(4 * b["in"] * d * d + 2 * b["in"] ** 2 * d + 2 * b["out"] * d * hidden for b in trace)
    c = head_channels
    head = nx * (9 * d * c + 9 * c * c + 5 * c)
    return {"embed": embed, "blocks": blocks, "head": head, "total": embed + blocks + head}


def tokens_pruned(trace: list[dict]) -> dict:
    """Fraction of vision tokens removed, from per-block counts ("in": tokens the block's attention
    read, "out": tokens its MLP ran on), all relative to the tokens entering the first block.
    `block_mean`: mean over blocks of the tokens each block read, the compute-relevant figure;
    pruning inside the last block removes tokens that no later block reads, so it does not count.
    `final`: tokens left after the last block. `mlp_block_mean`: as block_mean, over MLP inputs."""
    total, blocks = trace[0]["in"], len(trace)
    return {"block_mean": 1 - sum(b["in"] for b in trace) / (blocks * total),
            "final": 1 - trace[-1]["out"] / total,
            "mlp_block_mean": 1 - sum(b["out"] for b in trace) / (blocks * total)}


BUDGET_TOLERANCE = 0.02  # an isolated arm may exceed the matched backbone MACs by this fraction, no more


def backbone_macs(pruning: Pruning, vit_cfg: dict, nx: int, nz: int) -> int:
    """Backbone multiply-accumulates of one forward at the target keep ratios."""
    trace = token_trace(pruning, vit_cfg["num_hidden_layers"], nx, nz)
    return macs(trace, vit_cfg, nx, nz, 0)["blocks"]


def match_budget(target: Pruning, blocks: dict[str, tuple[int, ...]], token_type: bool, vit_cfg: dict, nx: int,
                 nz: int) -> Pruning:
    """An isolated arm (its modules pruning in their blocks at one shared keep ratio) at the budget
    of `target`: the smallest keep ratio, on a 0.01 grid, whose backbone MACs are at least the
    target's, so the arm never gets less compute than the unified one. An arm whose floor (one
    token kept per module) still exceeds the target by more than BUDGET_TOLERANCE cannot be matched
    in those blocks: an error names it."""
    budget = backbone_macs(target, vit_cfg, nx, nz)
    for r in range(1, 101):
        cand = Pruning(dict(blocks), {m: r / 100 for m in blocks}, token_type)
        cost = backbone_macs(cand, vit_cfg, nx, nz)
        if cost >= budget:
            if cost > budget * (1 + BUDGET_TOLERANCE):
                raise ValueError(f"pruning {sorted(blocks)} in blocks {blocks} cannot come down to the matched budget "
                                 f"({cost / budget:.3f} of its backbone MACs at keep {r / 100}): prune earlier")
            return cand
    return Pruning(dict(blocks), {m: 1.0 for m in blocks}, token_type)


def resolve_variant(name: str, variants: dict, vit_cfg: dict, nx: int, nz: int) -> Pruning:
    """A variant's Pruning; an isolated arm with `match_budget` gets its keep ratio solved."""
    v, layers = variants[name], vit_cfg["num_hidden_layers"]
    for module in MODULES:
        bad = [b for b in v.get(module, {}).get("blocks", ()) if b >= layers]
        if bad:
            raise ValueError(f"variant {name!r}: {module} blocks {bad} do not exist in a {layers}-block backbone")
        if layers - 1 in v.get(module, {}).get("blocks", ()):
            raise ValueError(f"variant {name!r}: {module} prunes in the last block ({layers - 1}), where no later "
                             "block reads the smaller sequence")
    if "match_budget" in v:
        target = Pruning.from_variant(variants[v["match_budget"]])
        blocks = {m: tuple(v[m]["blocks"]) for m in MODULES if m in v}
        return match_budget(target, blocks, bool(v.get("token_type", False)), vit_cfg, nx, nz)
    return Pruning.from_variant(v)


def variant_pruning(model: OneStreamTracker, variants: dict, name: str) -> Pruning:
    return resolve_variant(name, variants, model.vit.config, model.gx**2, model.gz**2)
