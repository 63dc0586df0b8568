"""HiDrop: hierarchical visual token dropping in a tiny MLLM, and the PyramidDrop baseline.

Every arm is a `Schedule`: which visual tokens each decoder layer processes. The sequence is always
[<bos>] [visual tokens] [question, right-padded]; the answer is predicted at the last question token
(the query row), so visual tokens always sit between <bos> and the text, in their original order.
- Late injection (`entry` > 0): layers before `entry` see <bos> and the text only, the text at the
  positions it would have with the image present (shifted by the image length); before layer
  `entry` the raw projector outputs are inserted with their own positions 1..N.
- Ranking (`drops`: (layer, keep) pairs): before layer l the visual tokens are ranked with layer l's
  input norm, q/k projections and RoPE (the public code ranks "after layer l-1" with the next
  layer's weights): softmax(q k^T / sqrt(d) + causal) of the query row over all keys, averaged over
  heads, image columns sliced out without renormalising. Top-k is hard `torch.topk` on detached
  scores: the public "differentiable top-k" passes no gradient either, only indices are used. The
  kept tokens stay in original order with their original positions (persistent positions).
- Early exit (`exit`): before that layer every visual token leaves; the text keeps its positions.
- PDrop (`reindex`): visual tokens from layer 0, drops at stage boundaries with geometric keep
  ratios, positions re-indexed contiguously after each drop.
The average visual tokens per layer is counted in the forward (`Trace`), not taken from the config.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from repro.models.decoder import apply_rope, keep_tokens
from repro.models.mllm import TinyMLLM, splice


@dataclass(frozen=True)
class Schedule:
    """Visual tokens per layer of a `layers`-layer decoder. entry None: no image (blind arm)."""

    layers: int
    entry: int | None = 0
    drops: tuple[tuple[int, int], ...] = ()  # (layer, visual tokens kept from that layer on)
    exit: int | None = None
    reindex: bool = False  # PDrop: contiguous positions after each drop
    shift_text: bool = True  # late injection: text at the positions it has with the image present

    def __post_init__(self):
        layers = [layer for layer, _ in self.drops]
        if layers != sorted(set(layers)):
            raise ValueError(f"drop layers must be increasing, got {layers}")
        if self.entry is not None:
            if not 0 <= self.entry < self.layers:
                raise ValueError(f"entry {self.entry} outside 0..{self.layers - 1}")
            if layers and layers[0] <= self.entry:
                raise ValueError(f"the first drop ({layers[0]}) must come after the entry layer ({self.entry})")
        stop = self.layers if self.exit is None else self.exit
        if layers and layers[-1] >= stop:
            raise ValueError(f"drop layer {layers[-1]} at or after the exit / last layer ({stop})")

    def counts(self, n: int) -> list[int]:
        """Analytic visual tokens of each layer (the forward's Trace measures the same)."""
        out, v = [], 0
        drops = dict(self.drops)
        for i in range(self.layers):
            if i == self.entry:
                v = n
            if i in drops:
                v = min(v, drops[i])
            if i == self.exit:
                v = 0
            out.append(v)
        return out


def schedule_from(spec: dict, layers: int, n: int) -> Schedule:
    """An arm's params -> Schedule. kinds: vanilla, blind, hidrop {entry, drops: [[layer, keep]],
    exit}, pdrop {first, stages, lam, persistent}: see `pdrop_schedule`."""
    kind = spec["kind"]
    if kind == "vanilla":
        return Schedule(layers)
    if kind == "blind":
        return Schedule(layers, entry=None)
    if kind == "hidrop":
        return Schedule(layers, entry=spec["entry"], drops=tuple(map(tuple, spec["drops"])), exit=spec.get("exit"))
    if kind == "pdrop":
        return pdrop_schedule(layers, n, spec["first"], spec["stages"], spec["lam"],
                              reindex=not spec.get("persistent", False))
    raise ValueError(f"unknown arm kind {kind!r} (expected vanilla, blind, hidrop or pdrop)")


def arm_schedule(arms: dict, name: str, layers: int, n: int) -> Schedule:
    """The schedule of arm `name`; a PDrop arm with `match: <arm>` gets the lambda that spends that
    arm's visual-token budget (solve_pdrop_lambda)."""
    spec = arms[name]
    if spec["kind"] == "pdrop" and "lam" not in spec:
        target = sum(arm_schedule(arms, spec["match"], layers, n).counts(n))
        spec = {**spec, "lam": solve_pdrop_lambda(layers, n, spec["first"], spec["stages"], target)}
    return schedule_from(spec, layers, n)


# ---------------------------------------------------------------- PyramidDrop


def pdrop_layers(layers: int, first: int, stages: int) -> list[int]:
    """Drop layers: `first`, then the rest of the depth split into stages - 1 equal spans (the
    published 32-layer setting: first 8, 4 stages -> 8, 16, 24)."""
    span = (layers - first) / (stages - 1)
    return [first + round(j * span) for j in range(stages - 1)]


def pdrop_schedule(layers: int, n: int, first: int, stages: int, lam: float, reindex: bool = True) -> Schedule:
    """Keep round(n lam^j) tokens from the j-th drop layer on (j = 1, 2, ...)."""
    keeps = [round(n * lam**j) for j in range(1, stages)]
    return Schedule(layers, entry=0, drops=tuple(zip(pdrop_layers(layers, first, stages), keeps)), reindex=reindex)


def solve_pdrop_lambda(layers: int, n: int, first: int, stages: int, budget: float) -> float:
    """The smallest lambda (to 1e-4) whose PDrop schedule spends at least `budget` visual tokens in
    total over the layers: equal budget, never less than the arm it is compared with."""
    total = lambda lam: sum(pdrop_schedule(layers, n, first, stages, lam).counts(n))  # noqa: E731
    if total(1.0) < budget:
        raise ValueError(f"PDrop cannot spend {budget} visual tokens in {layers} layers")
    lo, hi = 0.0, 1.0
    while hi - lo > 1e-4:
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if total(mid) >= budget else (mid, hi)
    return round(hi, 4)


# ---------------------------------------------------------------- ranking


@torch.no_grad()
def query_attention(block, rotary, h: torch.Tensor, positions: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
    """[B, T]: softmax(q k^T / sqrt(d) + causal) of each row's query token over all tokens, with
    `block`'s input norm, q/k projections and RoPE, averaged over heads."""
    a = block.attn
    x = block.attn_norm(h)
    rows = torch.arange(h.shape[0], device=h.device)
    cos, sin = rotary(positions, h.dtype)
    q = apply_rope(a.heads_of(a["q"](x[rows, query][:, None]), a.heads), cos[rows, :, query][:, :, None],
                   sin[rows, :, query][:, :, None])  # [B, H, 1, d]
    k = apply_rope(a.heads_of(a["k"](x), a.kv_heads), cos, sin).repeat_interleave(a.heads // a.kv_heads, dim=1)
    logits = (q @ k.transpose(-2, -1))[:, :, 0] / math.sqrt(a.head_dim)  # [B, H, T]
    visible = torch.arange(h.shape[1], device=h.device)[None] <= query[:, None]
    return logits.masked_fill(~visible[:, None], float("-inf")).softmax(-1).mean(1)


def top_visual(scores: torch.Tensor, v: int, keep: int) -> torch.Tensor:
    """Sequence indices [B, keep] of the `keep` best-scored visual tokens (indices 1..v), in original
    order; the image columns of the full softmax are sliced out, not renormalised."""
    idx = scores[:, 1:1 + v].topk(keep, dim=1).indices
    return idx.sort(dim=1).values + 1


# ---------------------------------------------------------------- the forward


@dataclass
class Trace:
    """Visual tokens each layer processed (per forward call, the same for every row)."""

    visual: list[int] = field(default_factory=list)
    text: list[int] = field(default_factory=list)


def forward(model: TinyMLLM, sched: Schedule, images: torch.Tensor | None, text: torch.Tensor,
            last: torch.Tensor, bos_id: int, trace: Trace | None = None,
            layer_hook=None) -> torch.Tensor:
    """Answer logits [B, V] at each row's query token (text index `last`). text: ids [B, T] of the
    right-padded question. `layer_hook(i, h, positions, v, query)` sees each layer's input (analysis)."""
    dec = model.decoder
    b, t = text.shape
    n = model.n_visual
    dev = text.device
    bos = dec.embed(torch.full((b, 1), bos_id, device=dev))
    vis = model.visual_tokens(images) if sched.entry is not None else None
    text_pos = torch.arange(1, 1 + t, device=dev) + (n if sched.entry is not None and sched.shift_text else 0)
    if sched.entry == 0:
        h = splice([bos, vis, dec.embed(text)])
        positions = torch.arange(1 + n + t, device=dev)
        v = n
    else:
        h = splice([bos, dec.embed(text)])
        positions = torch.cat([torch.zeros(1, dtype=torch.long, device=dev), text_pos])
        v = 0
    positions = positions.expand(b, -1)
    drops = dict(sched.drops)
    state = {"v": v}
    trace = trace if trace is not None else Trace()

    def before_layer(i, h, positions, mask):
        v, changed = state["v"], False
        if i == sched.entry and i > 0:  # late injection: the raw projector outputs, positions 1..n
            h = splice([h[:, :1], vis, h[:, 1:]])
            positions = torch.cat([positions[:, :1], torch.arange(1, 1 + n, device=dev).expand(b, n),
                                   positions[:, 1:]], dim=1)
            v, changed = n, True
        if i in drops and drops[i] < v:
            scores = query_attention(dec.blocks[i], dec.rotary, h, positions, 1 + v + last)
            rest = torch.arange(1 + v, h.shape[1], device=dev).expand(b, -1)
            keep = torch.cat([torch.zeros(b, 1, dtype=torch.long, device=dev), top_visual(scores, v, drops[i]), rest], 1)
            h, positions, _ = keep_tokens(keep, h, positions, None)
            if sched.reindex:
                positions = torch.arange(h.shape[1], device=dev).expand(b, -1)
            v, changed = drops[i], True
        if i == sched.exit and v:
            keep = torch.cat([torch.zeros(b, 1, dtype=torch.long, device=dev),
                              torch.arange(1 + v, h.shape[1], device=dev).expand(b, -1)], 1)
            h, positions, _ = keep_tokens(keep, h, positions, None)
            v, changed = 0, True
        state["v"] = v
        trace.visual.append(v)
        trace.text.append(h.shape[1] - v)
        if layer_hook is not None:
            layer_hook(i, h, positions, v, 1 + v + last)
        return (h, positions, mask) if changed else None

    logits, _ = model(inputs_embeds=h, positions=positions, before_layer=before_layer)
    rows = torch.arange(b, device=dev)
    return logits[rows, 1 + state["v"] + last]


class Arm(nn.Module):
    """The MLLM run with one arm's schedule; forward(**batch) -> .loss on the answer token (the
    answer span is one token), so the shared training loop trains it."""

    def __init__(self, model: TinyMLLM, sched: Schedule, bos_id: int):
        super().__init__()
        self.model, self.sched, self.bos_id = model, sched, bos_id
        self.trace = Trace()

    def forward(self, images, text, last, answer=None):
        self.trace = Trace()
        logits = forward(self.model, self.sched, images, text, last, self.bos_id, self.trace)
        loss = None if answer is None else F.cross_entropy(logits.float(), answer)
        return _Out(logits, loss)


@dataclass
class _Out:
    logits: torch.Tensor
    loss: torch.Tensor | None


def caption_loss(model: TinyMLLM, images: torch.Tensor, ids: torch.Tensor, labels: torch.Tensor,
                 bos_id: int) -> torch.Tensor:
    """Pre-training (LLaVA's alignment stage): [<bos>] [all visual tokens] [caption <eos>], the
    next-token loss on the caption (labels -100 on padding)."""
    b = ids.shape[0]
    bos = model.embed(torch.full((b, 1), bos_id, device=ids.device))
    vis = model.visual_tokens(images)
    logits, _ = model(inputs_embeds=splice([bos, vis, model.embed(ids)]))
    pred = logits[:, vis.shape[1]:-1]  # the token before each caption token predicts it
    return F.cross_entropy(pred.reshape(-1, pred.shape[-1]).float(), labels.reshape(-1), ignore_index=-100)


class Captioner(nn.Module):
    def __init__(self, model: TinyMLLM, bos_id: int):
        super().__init__()
        self.model, self.bos_id = model, bos_id

    def forward(self, images, ids, labels):
        return _Out(None, caption_loss(self.model, images, ids, labels, self.bos_id))


def average_tokens(trace_visual: list[int]) -> float:
    """Average visual tokens per layer over all layers, zero-token layers included (the paper's figure)."""
    return sum(trace_visual) / len(trace_visual)
