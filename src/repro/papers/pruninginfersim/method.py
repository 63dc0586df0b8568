"""PruningInferSim: six LLM pruning families seen through the GEMMs they shrink.

`PrunableLlama` is the shared decoder (repro.models.decoder) with what the families add: low-rank
projections, per-token routers and block-sparse attention. The dense model and every pruned variant
run through this same code, so a measured speedup is the pruning and nothing else. Every matrix
product reports its logical (M, N, K), FLOPs and bytes to `repro.core.flops`, which is how the bound
1 / (1 - f) and the M/N/K taxonomy are computed from what actually ran.

Families (s = fraction removed):
  static_depth   whole attention / FFN sublayers -> identity, chosen by block influence
  static_width   KV-head groups (with their query heads) and FFN channels: N, and K of the next GEMM
  lowrank        W (N x K) -> K -> r -> N by truncated SVD: K
  sparse24       2 of every 4 weights along K (Wanda score): K declared, full K executed on CPU
  dynamic_depth  a router per layer lets tokens skip q/o, attention output and the FFN: M
  attn_sparsity  block-sparse attention keeping the top blocks by pooled q.k: N/K of attention
"""
from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

from repro.core import flops
from repro.models.decoder import ATTN_OPS, MLP_OPS, Block, Decoder, Linear, apply_rope, causal_mask
from repro.papers.pruninginfersim._calibration import (block_influence, calibrate_router_thresholds,
                                                       input_norms, train_routers)

FAMILIES = ("static_depth", "static_width", "lowrank", "sparse24", "dynamic_depth", "attn_sparsity")
# Families whose latency-run selection is seeded-random (the rest are determined by the weights/data),
# so only these are timed over several selection seeds.
RANDOM_SELECTION = ("static_depth", "static_width", "sparse24", "dynamic_depth")
# The paper's taxonomy: which GEMM dimension each family shrinks ("removed" = whole GEMMs go away).
TAXONOMY = {"static_depth": ["removed"], "static_width": ["K", "N"], "lowrank": ["K"], "sparse24": ["K"],
            "dynamic_depth": ["M"], "attn_sparsity": ["K", "N"]}
# Families whose shape change is declared, not executed, here: why the kernels do not shrink it.
BY_DESIGN = {"sparse24": "needs sparse kernels"}


# --------------------------------------------------------------------------- what the families add
class LowRank(nn.Module):
    """W ~ U V with V: K -> r and U: r -> N. The second GEMM keeps the op's name: its K is r."""

    def __init__(self, name: str, n: int, k: int, rank: int):
        super().__init__()
        self.name = name
        self.inner = Linear(f"{name}.lr_in", rank, k)
        self.outer = Linear(name, n, rank)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.outer(self.inner(x))

    def structure(self) -> dict:
        return {"kind": "lowrank", "n": self.outer.weight.shape[0], "k": self.inner.weight.shape[1],
                "rank": self.inner.weight.shape[0]}


class Router(nn.Module):
    """Dynamic depth: d -> hidden -> 2 logits (skip, execute) per token; executes when p > threshold."""

    def __init__(self, name: str, dim: int, hidden: int, threshold: float = 0.5):
        super().__init__()
        self.fc1 = Linear(f"{name}.fc1", hidden, dim)
        self.fc2 = Linear(f"{name}.fc2", 2, hidden, bias=True)
        nn.init.normal_(self.fc1.weight, std=dim ** -0.5)
        nn.init.normal_(self.fc2.weight, std=hidden ** -0.5)
        with torch.no_grad():  # start near "execute everything" (p ~ 0.88): the dense model
            self.fc2.bias.copy_(torch.tensor([0.0, 2.0]))
        self.register_buffer("threshold", torch.tensor(float(threshold)))

    def prob(self, h: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.fc2(F.silu(self.fc1(h))), dim=-1)[..., 1]

    def structure(self) -> dict:
        return {"hidden": self.fc1.weight.shape[0]}


def block_sparse_attention(q, k, v, block: int, keep: float, name: str = "attn") -> torch.Tensor:
    """Keep, per query block and KV group, the top ceil(keep * causal blocks) key blocks by pooled q.k.

    Selection is per KV group (its query heads pooled), so the kept K/V blocks are gathered once per
    group, never copied per query head; the diagonal block is always kept (a token must see itself).
    The kept blocks go through the same SDPA call as dense attention, with a mask for causality and
    for the rows that keep fewer blocks; the gather is part of the measured cost. A decode query is
    one row (query blocks are min(block, Tq) long), so nothing is padded at decode.
    """
    b, h, tq, d = q.shape
    g, tk = k.shape[1], k.shape[2]
    rep, dev = h // g, q.device
    past = tk - tq  # 0 at prefill, the cache length at decode
    nkb = math.ceil(tk / block)
    pad = nkb * block - tk
    kp = F.pad(k, (0, 0, 0, pad)).view(b, g, nkb, block, d)
    vp = F.pad(v, (0, 0, 0, pad)).view(b, g, nkb, block, d)
    key_pos = torch.arange(nkb * block, device=dev).view(nkb, block)
    k_pool = kp.sum(3) / torch.clamp((key_pos < tk).sum(1), min=1).view(1, 1, nkb, 1).to(k.dtype)

    qb = min(block, tq)
    nqb = math.ceil(tq / qb)
    qp = F.pad(q, (0, 0, 0, nqb * qb - tq)).view(b, g, rep, nqb, qb, d)
    q_pos = past + torch.arange(nqb * qb, device=dev).view(nqb, qb)
    scores = qp.mean((2, 4)) @ k_pool.transpose(-1, -2)  # [b,g,nqb,nkb]
    own_block = torch.clamp(q_pos[:, -1], max=past + tq - 1) // block  # of the block's last real query
    visible = torch.arange(nkb, device=dev).view(1, nkb) <= own_block.view(nqb, 1)  # causal at block level
    n_keep = torch.clamp(torch.ceil(keep * visible.sum(1)).long(), min=1)
    k_max = int(n_keep.max())
    scores = scores.masked_fill(~visible, float("-inf"))
    scores = scores.masked_fill(torch.arange(nkb, device=dev).view(1, nkb) == own_block.view(nqb, 1),
                                float("inf"))
    idx = scores.topk(k_max, dim=-1).indices  # [b,g,nqb,k_max]
    rank_ok = torch.arange(k_max, device=dev).view(1, k_max) < n_keep.view(nqb, 1)  # [nqb,k_max]

    bi = torch.arange(b, device=dev).view(b, 1, 1, 1)
    gi = torch.arange(g, device=dev).view(1, g, 1, 1)
    kg = kp[bi, gi, idx].reshape(b, g, nqb, k_max * block, d)  # only the kept blocks are copied
    vg = vp[bi, gi, idx].reshape(b, g, nqb, k_max * block, d)
    kpos = (idx[..., None] * block + torch.arange(block, device=dev)).reshape(b, g, nqb, k_max * block)
    allowed = (kpos[:, :, :, None, :] <= q_pos.view(1, 1, nqb, qb, 1)) & (kpos < tk)[:, :, :, None, :]
    allowed &= rank_ok.repeat_interleave(block, dim=1).view(1, 1, nqb, 1, k_max * block)
    # the group's query heads share its blocks: fold them into the query rows of one SDPA call
    rows = qp.transpose(2, 3).reshape(b, g, nqb, rep * qb, d)
    mask = allowed[:, :, :, None].expand(-1, -1, -1, rep, -1, -1).reshape(b, g, nqb, rep * qb, -1)
    out = F.scaled_dot_product_attention(rows, kg, vg, attn_mask=mask)
    out = out.view(b, g, nqb, rep, qb, d).transpose(2, 3).reshape(b, h, nqb * qb, d)[:, :, :tq]
    if flops.recording():
        # Same logical shape as the dense attention, with N (qk) / K (av) scaled by the kept share
        # of the causally visible query-key pairs, so FLOPs and bytes compare like for like.
        kept_pairs = float(allowed.reshape(b, g, nqb * qb, -1)[:, :, :tq].sum()) / (b * g)
        visible_pairs = float(sum(past + i + 1 for i in range(tq)))
        share = kept_pairs / visible_pairs
        density = (tk + 1) / (2 * tk) if tq > 1 else 1.0
        kv_bytes = int(share * b * g * tk * d * k.element_size())
        kept = max(1, round(tk * share))
        flops.record(f"{name}.qk", tq, kept, d, count=b * h, density=density, nbytes=kv_bytes)
        flops.record(f"{name}.av", tq, d, kept, count=b * h, density=density, nbytes=kv_bytes)
    return out


# --------------------------------------------------------------------------- the executor
class PrunableBlock(Block):
    """A decoder layer that may hold low-rank projections, a router, or block-sparse attention."""

    def __init__(self, idx: int, spec: dict, dim: int, eps: float):
        super().__init__(idx, spec, dim, eps)
        self.router = Router(f"L{idx}.router", dim, spec["router"]["hidden"]) if spec.get("router") else None
        self.sparsity = spec.get("attn_sparsity")

    def linear(self, name: str, spec: dict) -> nn.Module:
        if spec["kind"] == "lowrank":
            return LowRank(name, spec["n"], spec["k"], spec["rank"])
        return super().linear(name, spec)

    def attend(self, q, k, v, mask):
        if not self.sparsity:
            return super().attend(q, k, v, mask)
        if mask is not None:
            raise ValueError("block-sparse attention is causal only (no explicit mask)")
        return block_sparse_attention(q, k, v, self.sparsity["block"], self.sparsity["keep"], f"L{self.idx}.attn")

    def structure(self) -> dict:
        return {**super().structure(), "router": self.router.structure() if self.router else None,
                "attn_sparsity": self.sparsity}

    def forward(self, h, rope, mask=None, past=None):
        return super().forward(h, rope, mask, past) if self.router is None else self.routed(h, rope, mask, past)

    def routed(self, h, rope, mask, past):
        """Dynamic depth. K/V come from every token; q, o, attention output and FFN only from the
        tokens the router executes. Training uses a straight-through gate over the dense update."""
        p = self.router.prob(h)  # [B,T]
        a = self.attn
        if self.training:
            gate = (p > self.router.threshold).to(h.dtype)
            gate = gate + p - p.detach()
            delta, cache = a(self.attn_norm(h), rope, mask, past, self.attend)
            h2 = h + gate[..., None] * delta
            h2 = h + gate[..., None] * (delta + self.mlp(self.mlp_norm(h2)))
            self.exec_prob = p  # read by train_routers for the capacity penalty
            return h2, cache
        b, t, _ = h.shape
        x = self.attn_norm(h)
        k, v = a.keys_values(x, rope, past)  # all tokens keep their K/V
        execute = p > self.router.threshold
        self.last_exec = execute
        rows, cols = execute.nonzero(as_tuple=True)
        if rows.numel() == 0:
            return h, (k, v)
        tq = int(execute.sum(1).max())
        # pack executed tokens per row to the left: slot = rank of the token among its row's executed
        slot = torch.cumsum(execute.long(), dim=1)[rows, cols] - 1
        q = torch.zeros(b, tq, a.heads, a.head_dim, dtype=h.dtype, device=h.device)
        q[rows, slot] = a["q"](x[rows, cols]).view(-1, a.heads, a.head_dim)  # M = executed tokens only
        q_idx = torch.zeros(b, tq, dtype=torch.long, device=h.device)  # padded slots: token 0, output discarded
        q_idx[rows, slot] = cols
        cos, sin = (c[:, 0].gather(1, q_idx[..., None].expand(-1, -1, c.shape[-1]))[:, None] for c in rope)
        q = apply_rope(q.transpose(1, 2), cos, sin)
        tk = k.shape[2]
        if mask is None:  # causal by position on the key axis (the cache comes first)
            q_mask = causal_mask(q_idx + tk - t, tk, h.dtype)
        else:
            q_mask = mask.gather(2, q_idx[:, None, :, None].expand(-1, mask.shape[1], -1, tk))
        att = self.attend(q, k, v, q_mask).transpose(1, 2)[rows, slot].reshape(-1, a.heads * a.head_dim)
        hs = h[rows, cols] + a["o"](att)
        hs = hs + self.mlp(self.mlp_norm(hs))
        out = h.clone()
        out[rows, cols] = hs
        return out, (k, v)


class PrunableLlama(Decoder):
    """The shared decoder with PrunableBlocks; `structure()` + state dict fully describe a pruned model."""

    block_cls = PrunableBlock


# --------------------------------------------------------------------------- the six transforms
def _scores(n: int, calibrated: torch.Tensor | None, gen: torch.Generator | None) -> torch.Tensor:
    """Importance scores, or seeded random ones (latency runs select at random, as the public code)."""
    if calibrated is not None:
        return calibrated
    return torch.rand(n, generator=gen)


def round_to_multiple(x: float, multiple: int) -> int:
    return int(multiple * round(x / multiple))


def prune_static_depth(model, s: float, influence: dict | None, gen=None):
    """Remove int(L*s) attention and int(L*s) FFN sublayers, each chosen separately, lowest first."""
    model = copy.deepcopy(model)
    n_layers = len(model.blocks)
    n_remove = int(n_layers * s)
    structure = model.structure()
    removed = {}
    for kind in ("attn", "mlp"):
        scores = _scores(n_layers, torch.tensor(influence[kind]) if influence else None, gen)
        drop = sorted(scores.argsort()[:n_remove].tolist())
        removed[kind] = drop
        for i in drop:
            structure["blocks"][i][kind] = None
    return rebuild(model, structure), removed


def prune_static_width(model, s: float, norms: dict | None, gen=None, channel_multiple: int = 8):
    """Remove whole KV groups (their query heads, k/v rows, o columns) and FFN channels per layer."""
    model = copy.deepcopy(model)
    structure = model.structure()
    state = model.state_dict()
    for i, block in enumerate(model.blocks):
        bs = structure["blocks"][i]
        if bs["attn"] is not None:
            a = bs["attn"]
            rep, hd = a["heads"] // a["kv_heads"], a["head_dim"]
            wanda = None
            if norms:  # sum of |W_o[:, c]| * ||X_c|| over the columns c of the group's query heads
                col = block.attn["o"].weight.detach().abs().sum(0) * norms[f"L{i}.o"]
                wanda = col.view(a["kv_heads"], rep * hd).sum(1)
            group = _scores(a["kv_heads"], wanda, gen)
            n_drop = min(a["kv_heads"] - 1, int(math.floor(a["kv_heads"] * s + 0.5)))
            keep_g = sorted(group.argsort()[n_drop:].tolist())
            kv_rows = torch.cat([torch.arange(g * hd, (g + 1) * hd) for g in keep_g])
            q_rows = torch.cat([torch.arange(g * rep * hd, (g + 1) * rep * hd) for g in keep_g])
            p = f"blocks.{i}.attn."
            state[p + "q.weight"] = state[p + "q.weight"][q_rows]
            state[p + "k.weight"] = state[p + "k.weight"][kv_rows]
            state[p + "v.weight"] = state[p + "v.weight"][kv_rows]
            state[p + "o.weight"] = state[p + "o.weight"][:, q_rows]
            a.update(heads=len(keep_g) * rep, kv_heads=len(keep_g))
            for op, rows in (("q", q_rows), ("k", kv_rows), ("v", kv_rows)):
                a[op]["n"] = len(rows)
            a["o"]["k"] = len(q_rows)
        if bs["mlp"] is not None:
            m = bs["mlp"]
            inter = m["down"]["k"]
            wanda = block.mlp["down"].weight.detach().abs().sum(0) * norms[f"L{i}.down"] if norms else None
            score = _scores(inter, wanda, gen)
            n_drop = min(inter - channel_multiple, round_to_multiple(inter * s, channel_multiple))
            keep = score.argsort()[n_drop:].sort().values
            p = f"blocks.{i}.mlp."
            state[p + "gate.weight"] = state[p + "gate.weight"][keep]
            state[p + "up.weight"] = state[p + "up.weight"][keep]
            state[p + "down.weight"] = state[p + "down.weight"][:, keep]
            m["gate"]["n"] = m["up"]["n"] = m["down"]["k"] = len(keep)
    return rebuild(model, structure, state), None


def lowrank_rank(n: int, k: int, s: float, multiple: int = 8) -> int:
    """r with r (N + K) = (1 - s) N K, rounded to a multiple (kernels prefer aligned sizes)."""
    return max(multiple, round_to_multiple((1 - s) * n * k / (n + k), multiple))


def prune_lowrank(model, s: float, rank_multiple: int = 8):
    """Every block linear W (N x K) becomes U (N x r) V (r x K) from a truncated SVD. Info: the
    share of each matrix's squared singular values (its energy) that rank r keeps, per op kind
    averaged over layers, with the mean and the least over all matrices (how much r throws away)."""
    model = copy.deepcopy(model)
    structure = model.structure()
    state = dict(model.state_dict())
    dtype = model.embed.weight.dtype
    energy: dict[str, list[float]] = {}
    for i in range(len(model.blocks)):
        for group, ops in (("attn", ATTN_OPS), ("mlp", MLP_OPS)):
            if structure["blocks"][i][group] is None:
                continue
            for op in ops:
                w = state.pop(f"blocks.{i}.{group}.{op}.weight").float()
                n, k = w.shape
                r = lowrank_rank(n, k, s, rank_multiple)
                u, sv, vh = torch.linalg.svd(w, full_matrices=False)
                energy.setdefault(op, []).append(float(sv[:r].square().sum() / sv.square().sum()))
                root = sv[:r].sqrt()
                state[f"blocks.{i}.{group}.{op}.outer.weight"] = (u[:, :r] * root).to(dtype)
                state[f"blocks.{i}.{group}.{op}.inner.weight"] = (root[:, None] * vh[:r]).to(dtype)
                structure["blocks"][i][group][op] = {"kind": "lowrank", "n": n, "k": k, "rank": r}
    every = [e for per_op in energy.values() for e in per_op]
    info = {"mean": sum(every) / len(every), "min": min(every),
            "by_op": {op: sum(es) / len(es) for op, es in energy.items()}}
    return rebuild(model, structure, state), {"svd_energy": info}


def mask_24(scores: torch.Tensor) -> torch.Tensor:
    """Keep the 2 highest-scoring of every 4 consecutive weights along K."""
    n, k = scores.shape
    groups = scores.view(n, k // 4, 4)
    top = groups.topk(2, dim=-1).indices
    mask = torch.zeros_like(groups, dtype=torch.bool).scatter_(-1, top, True)
    return mask.view(n, k)


def prune_sparse24(model, norms: dict | None, gen=None):
    """2:4 on every block linear by the Wanda score |W_ij| * ||X_j|| (random scores for latency).

    The zeros are stored densely and the CPU runs the full-K GEMM; K / 2 is declared (by design:
    it needs sparse kernels), so the accounting keeps what ran apart from what 2:4 promises."""
    model = copy.deepcopy(model)
    structure = model.structure()
    for i, block in enumerate(model.blocks):
        for group, ops in (("attn", ATTN_OPS), ("mlp", MLP_OPS)):
            if structure["blocks"][i][group] is None:
                continue
            for op in ops:
                lin = getattr(block, group)[op]
                w = lin.weight.data
                score = w.abs() * norms[lin.name][None] if norms else torch.rand(w.shape, generator=gen).to(w.device)
                w.mul_(mask_24(score).to(w.dtype))
                lin.declared_k = w.shape[1] // 2
    return model, None


def add_routers(model, hidden: int):
    model = copy.deepcopy(model)
    structure = model.structure()
    for b in structure["blocks"]:
        if b["attn"] is None or b["mlp"] is None:
            raise ValueError("dynamic depth needs both sublayers in every layer")
        b["router"] = {"hidden": hidden}
    return rebuild(model, structure, model.state_dict(), new_routers=True)


def add_attn_sparsity(model, s: float, block: int):
    model = copy.deepcopy(model)
    for b in model.blocks:
        b.sparsity = {"block": block, "keep": 1 - s}
    return model, None


def rebuild(model, structure: dict, state: dict | None = None, new_routers: bool = False):
    """A model of the new structure with the surviving weights (removed sublayers are dropped)."""
    new = PrunableLlama(structure).to(model.embed.weight.dtype)
    state = state if state is not None else model.state_dict()
    keep = new.state_dict().keys()
    missing = [k for k in keep if k not in state and not (new_routers and ".router." in k)]
    if missing:
        raise KeyError(f"pruned model lacks weights for {missing[:5]}")
    new.load_state_dict({k: v for k, v in state.items() if k in keep}, strict=False)
    return new.eval()


# --------------------------------------------------------------------------- one entry point
def sparsities_for(family: str, sweep: list[float]) -> list[float]:
    """2:4 removes exactly half of K whatever the sweep says."""
    return [0.5] if family == "sparse24" else sorted(sweep)


def apply_family(model, family: str, s: float, *, calib: list[torch.Tensor], p: dict,
                 gen: torch.Generator | None = None, router_batches=None, exec_rates: list[float] | None = None):
    """Prune `model` with one family at sparsity s.

    With `gen`, selection is seeded-random (latency runs: weights do not matter) and routers get
    thresholds calibrated to execute, per layer, the share `exec_rates` (what the trained routers
    executed on held-out text; default 1 - s everywhere); without it, selection uses calibration
    statistics and routers are trained on `router_batches(step)`. Returns (model, info).
    """
    scored = gen is None
    if family == "static_depth":
        return prune_static_depth(model, s, block_influence(model, calib) if scored else None, gen)
    if family == "static_width":
        return prune_static_width(model, s, input_norms(model, calib) if scored else None, gen,
                                  p["width_channel_multiple"])
    if family == "lowrank":
        return prune_lowrank(model, s, p["lowrank_rank_multiple"])
    if family == "sparse24":
        return prune_sparse24(model, input_norms(model, calib) if scored else None, gen)
    if family == "dynamic_depth":
        routed = add_routers(model, p["router"]["hidden"])
        if scored:
            r = p["router"]
            history = train_routers(routed, router_batches, s=s, steps=r["steps"], lr=r["lr"],
                                    penalty=r["penalty"])
            return routed, {"router_history": history}
        calibrate_router_thresholds(routed, calib, exec_rates or [1 - s] * len(routed.blocks))
        return routed, None
    if family == "attn_sparsity":
        return add_attn_sparsity(model, s, p["attn_block"])
    raise ValueError(f"unknown pruning family {family!r}; expected one of {FAMILIES}")


# A pruned model is saved as its structure (config.json) + weights (model.safetensors).
save_pruned = PrunableLlama.save
load_pruned = PrunableLlama.load
