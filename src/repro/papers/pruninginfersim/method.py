"""PruningInferSim: six LLM pruning families seen through the GEMMs they shrink.

`PrunableLlama` executes a Llama-style transformers model with plain tensor ops. The dense model and
every pruned variant run through this same code, so a measured speedup is the pruning and nothing
else. Every matrix product reports its logical (M, N, K), FLOPs and bytes to `repro.core.flops`, which
is how the bound 1 / (1 - f) and the M/N/K taxonomy are computed from what actually ran.

Families (s = fraction removed):
  static_depth   whole attention / FFN sublayers -> identity, chosen by block influence
  static_width   KV-head groups (with their query heads) and FFN channels: N, and K of the next GEMM
  lowrank        W (N x K) -> K -> r -> N by truncated SVD: K
  sparse24       2 of every 4 weights along K (Wanda score): K
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

FAMILIES = ("static_depth", "static_width", "lowrank", "sparse24", "dynamic_depth", "attn_sparsity")
# Families whose latency-run selection is seeded-random (the rest are determined by the weights/data),
# so only these are timed over several selection seeds.
RANDOM_SELECTION = ("static_depth", "static_width", "sparse24", "dynamic_depth")
# The paper's taxonomy: which GEMM dimension each family shrinks ("removed" = whole GEMMs go away).
TAXONOMY = {
    "static_depth": ["removed"],
    "static_width": ["K", "N"],
    "lowrank": ["K"],
    "sparse24": ["K"],
    "dynamic_depth": ["M"],
    "attn_sparsity": ["K", "N"],
}
ATTN_OPS = ("q", "k", "v", "o")
MLP_OPS = ("gate", "up", "down")


# --------------------------------------------------------------------------- building blocks
class Linear(nn.Module):
    """y = x W^T, reporting its GEMM. `k_eff` < K when 2:4 sparsity zeroes half of each row."""

    def __init__(self, name: str, n: int, k: int, sparse24: bool = False, bias: bool = False):
        super().__init__()
        self.name = name
        self.weight = nn.Parameter(torch.zeros(n, k))
        self.bias = nn.Parameter(torch.zeros(n)) if bias else None
        self.sparse24 = sparse24

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if flops.recording():
            n, k = self.weight.shape
            k_eff = k // 2 if self.sparse24 else k
            elem = self.weight.element_size()
            # 2:4 stores half the values plus 2 bits of position per kept value
            nbytes = n * k_eff * elem + (n * k_eff // 4 if self.sparse24 else 0)
            flops.record(self.name, x.numel() // k, n, k_eff, nbytes=nbytes)
        return F.linear(x, self.weight, self.bias)

    def structure(self) -> dict:
        return {"kind": "dense", "n": self.weight.shape[0], "k": self.weight.shape[1],
                "sparse24": self.sparse24}


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


def make_linear(name: str, spec: dict) -> nn.Module:
    if spec["kind"] == "lowrank":
        return LowRank(name, spec["n"], spec["k"], spec["rank"])
    return Linear(name, spec["n"], spec["k"], spec.get("sparse24", False))


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x.to(dtype)


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


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    return x * cos + rotate_half(x) * sin


# --------------------------------------------------------------------------- attention kernels
def dense_attention(q, k, v, causal: bool, name: str = "attn") -> torch.Tensor:
    """q [B,H,Tq,d], k/v [B,Hkv,Tk,d] (GQA). Causal prefill or a decode query over the whole cache."""
    b, h, tq, d = q.shape
    tk = k.shape[2]
    if flops.recording():
        density = (tk + 1) / (2 * tk) if causal and tq > 1 else 1.0
        kv_bytes = k.numel() * k.element_size()
        flops.record(f"{name}.qk", tq, tk, d, count=b * h, density=density, nbytes=kv_bytes)
        flops.record(f"{name}.av", tq, d, tk, count=b * h, density=density, nbytes=kv_bytes)
    return F.scaled_dot_product_attention(q, k, v, is_causal=causal and tq > 1,
                                          enable_gqa=k.shape[1] != h)


def block_sparse_attention(q, k, v, block: int, keep: float, name: str = "attn") -> torch.Tensor:
    """Keep, per query block, the top ceil(keep * causal blocks) key blocks by pooled q.k.

    The diagonal block is always kept (a token must see itself). Only kept blocks are gathered and
    multiplied, so FLOPs and KV bytes really drop; the gather is part of the measured cost.
    """
    b, h, tq, d = q.shape
    tk = k.shape[2]
    rep = h // k.shape[1]
    k = k.repeat_interleave(rep, dim=1)
    v = v.repeat_interleave(rep, dim=1)
    dev = q.device
    past = tk - tq  # 0 at prefill, the cache length at decode
    nkb = math.ceil(tk / block)
    pad = nkb * block - tk
    kp = F.pad(k, (0, 0, 0, pad)).view(b, h, nkb, block, d)
    vp = F.pad(v, (0, 0, 0, pad)).view(b, h, nkb, block, d)
    key_pos = torch.arange(nkb * block, device=dev).view(nkb, block)
    k_pool = kp.sum(3) / torch.clamp((key_pos < tk).sum(1), min=1).view(1, 1, nkb, 1).to(k.dtype)

    nqb = math.ceil(tq / block)
    qpad = nqb * block - tq
    qp = F.pad(q, (0, 0, 0, qpad)).view(b, h, nqb, block, d)
    q_pos = past + torch.arange(nqb * block, device=dev).view(nqb, block)
    q_pool = qp.mean(3)
    scores = q_pool @ k_pool.transpose(-1, -2)  # [b,h,nqb,nkb]
    last_q = torch.clamp(q_pos.min(1).values + block - 1, max=past + tq - 1)  # last real query pos
    own_block = last_q // block
    visible = torch.arange(nkb, device=dev).view(1, nkb) <= own_block.view(nqb, 1)  # causal at block level
    n_visible = visible.sum(1)
    n_keep = torch.clamp(torch.ceil(keep * n_visible).long(), min=1)
    k_max = int(n_keep.max())
    scores = scores.masked_fill(~visible, float("-inf"))
    scores = scores.masked_fill(torch.arange(nkb, device=dev).view(1, nkb) == own_block.view(nqb, 1),
                                float("inf"))
    idx = scores.topk(k_max, dim=-1).indices  # [b,h,nqb,k_max]
    rank_ok = torch.arange(k_max, device=dev).view(1, k_max) < n_keep.view(nqb, 1)  # [nqb,k_max]

    bi = torch.arange(b, device=dev).view(b, 1, 1, 1)
    hi = torch.arange(h, device=dev).view(1, h, 1, 1)
    kg = kp[bi, hi, idx].reshape(b, h, nqb, k_max * block, d)  # only the kept blocks are copied
    vg = vp[bi, hi, idx].reshape(b, h, nqb, k_max * block, d)
    kpos = (idx[..., None] * block + torch.arange(block, device=dev)).reshape(b, h, nqb, k_max * block)
    allowed = (kpos[:, :, :, None, :] <= q_pos.view(1, 1, nqb, block, 1)) & (kpos < tk)[:, :, :, None, :]
    allowed &= rank_ok.repeat_interleave(block, dim=1).view(1, 1, nqb, 1, k_max * block)
    att = (qp @ kg.transpose(-1, -2)) / math.sqrt(d)
    att = att.masked_fill(~allowed, float("-inf")).softmax(-1)
    out = (att @ vg).reshape(b, h, nqb * block, d)[:, :, :tq]
    if flops.recording():
        # Same logical shape as dense_attention, with N (qk) / K (av) scaled by the kept share of
        # the causally visible query-key pairs, so FLOPs and bytes compare like for like.
        kept_pairs = float(allowed.reshape(b, h, nqb * block, -1)[:, :, :tq].sum()) / (b * h)
        visible_pairs = float(sum(past + i + 1 for i in range(tq)))
        share = kept_pairs / visible_pairs
        density = (tk + 1) / (2 * tk) if tq > 1 else 1.0
        kv_bytes = int(share * b * (h // rep) * tk * d * k.element_size())
        kept = max(1, round(tk * share))
        flops.record(f"{name}.qk", tq, kept, d, count=b * h, density=density, nbytes=kv_bytes)
        flops.record(f"{name}.av", tq, d, kept, count=b * h, density=density, nbytes=kv_bytes)
    return out


# --------------------------------------------------------------------------- the executor
class Block(nn.Module):
    """One decoder layer: attention and FFN sublayers, each removable, with optional router."""

    def __init__(self, idx: int, spec: dict, dim: int, eps: float):
        super().__init__()
        self.idx = idx
        self.attn_spec = spec["attn"]
        self.mlp_spec = spec["mlp"]
        if spec["attn"] is not None:
            a = spec["attn"]
            self.heads, self.kv_heads, self.head_dim = a["heads"], a["kv_heads"], a["head_dim"]
            self.attn_norm = RMSNorm(dim, eps)
            self.attn = nn.ModuleDict({op: make_linear(f"L{idx}.{op}", a[op]) for op in ATTN_OPS})
        if spec["mlp"] is not None:
            self.mlp_norm = RMSNorm(dim, eps)
            self.mlp = nn.ModuleDict({op: make_linear(f"L{idx}.{op}", spec["mlp"][op])
                                      for op in MLP_OPS})
        self.router = Router(f"L{idx}.router", dim, spec["router"]["hidden"]) if spec.get("router") else None
        self.sparsity = spec.get("attn_sparsity")

    def structure(self) -> dict:
        attn = None
        if self.attn_spec is not None:
            attn = {"heads": self.heads, "kv_heads": self.kv_heads, "head_dim": self.head_dim,
                    **{op: self.attn[op].structure() for op in ATTN_OPS}}
        mlp = None if self.mlp_spec is None else {op: self.mlp[op].structure() for op in MLP_OPS}
        return {"attn": attn, "mlp": mlp, "router": self.router.structure() if self.router else None,
                "attn_sparsity": self.sparsity}

    # -- sublayers on a flat or batched token tensor
    def _kv(self, x, cos, sin, past):
        b, t, _ = x.shape
        k = self.attn["k"](x).view(b, t, self.kv_heads, self.head_dim).transpose(1, 2)
        v = self.attn["v"](x).view(b, t, self.kv_heads, self.head_dim).transpose(1, 2)
        k = apply_rope(k, cos, sin)
        if past is not None:
            k = torch.cat([past[0], k], dim=2)
            v = torch.cat([past[1], v], dim=2)
        return k, v

    def _attend(self, q, k, v, causal):
        name = f"L{self.idx}.attn"
        if self.sparsity:
            return block_sparse_attention(q, k, v, self.sparsity["block"], self.sparsity["keep"], name)
        return dense_attention(q, k, v, causal, name)

    def _mlp(self, h):
        x = self.mlp_norm(h)
        return self.mlp["down"](F.silu(self.mlp["gate"](x)) * self.mlp["up"](x))

    def _attention_all(self, h, cos, sin, past):
        b, t, _ = h.shape
        x = self.attn_norm(h)
        k, v = self._kv(x, cos, sin, past)
        q = self.attn["q"](x).view(b, t, self.heads, self.head_dim).transpose(1, 2)
        q = apply_rope(q, cos, sin)
        out = self._attend(q, k, v, causal=past is None).transpose(1, 2).reshape(b, t, -1)
        return self.attn["o"](out), (k, v)

    def forward(self, h, cos, sin, past, trace=None):
        if self.router is not None:
            return self._routed(h, cos, sin, past)
        cache = None
        if self.attn_spec is not None:
            delta, cache = self._attention_all(h, cos, sin, past)
            h = self._add(h, delta, trace, "attn")
        if self.mlp_spec is not None:
            h = self._add(h, self._mlp(h), trace, "mlp")
        return h, cache

    def _add(self, h, delta, trace, kind):
        out = h + delta
        if trace is not None:  # block influence: 1 - cos(h_in, h_out), summed over tokens
            cos_sim = F.cosine_similarity(h.float(), out.float(), dim=-1)
            trace[(self.idx, kind)] = trace.get((self.idx, kind), 0.0) + float((1 - cos_sim).sum())
        return out

    def _routed(self, h, cos, sin, past):
        """Dynamic depth. K/V come from every token; q, o, attention output and FFN only from the
        tokens the router executes. Training uses a straight-through gate over the dense update."""
        p = self.router.prob(h)  # [B,T]
        if self.training:
            gate = (p > self.router.threshold).to(h.dtype)
            gate = gate + p - p.detach()
            delta, cache = self._attention_all(h, cos, sin, past)
            h2 = h + gate[..., None] * delta
            h2 = h + gate[..., None] * (delta + self._mlp(h2))
            self.exec_prob = p  # read by train_routers for the capacity penalty
            return h2, cache
        b, t, dim = h.shape
        x = self.attn_norm(h)
        k, v = self._kv(x, cos, sin, past)  # all tokens keep their K/V
        execute = p > self.router.threshold
        self.last_exec = execute
        rows, cols = execute.nonzero(as_tuple=True)
        if rows.numel() == 0:
            return h, (k, v)
        counts = execute.sum(1)
        tq = int(counts.max())
        # pack executed tokens per row to the left: slot = rank of the token among its row's executed
        slot = torch.cumsum(execute.long(), dim=1)[rows, cols] - 1
        xq = self.attn["q"](x[rows, cols])  # M = executed tokens only
        qpad = torch.zeros(b, tq, self.heads, self.head_dim, dtype=h.dtype, device=h.device)
        qpad[rows, slot] = xq.view(-1, self.heads, self.head_dim)
        q_rel = torch.zeros(b, tq, dtype=torch.long, device=h.device)  # padded slots: position 0, output discarded
        q_rel[rows, slot] = cols
        q_pos = q_rel + (0 if past is None else past[0].shape[2])
        qpad = apply_rope(qpad.transpose(1, 2), cos[0, 0][q_rel][:, None], sin[0, 0][q_rel][:, None])
        tk = k.shape[2]
        mask = torch.arange(tk, device=h.device).view(1, 1, tk) <= q_pos[:, :, None]  # [B,tq,tk], causal by position
        rep = self.heads // self.kv_heads
        if flops.recording():
            density = float(mask.float().mean()) if tq > 1 else 1.0
            kv_bytes = k.numel() * k.element_size()
            name = f"L{self.idx}.attn"
            flops.record(f"{name}.qk", tq, tk, self.head_dim, count=b * self.heads, density=density,
                         nbytes=kv_bytes)
            flops.record(f"{name}.av", tq, self.head_dim, tk, count=b * self.heads, density=density,
                         nbytes=kv_bytes)
        att = F.scaled_dot_product_attention(
            qpad, k.repeat_interleave(rep, 1), v.repeat_interleave(rep, 1), attn_mask=mask[:, None])
        att = att.transpose(1, 2)[rows, slot].reshape(-1, self.heads * self.head_dim)
        hs = h[rows, cols] + self.attn["o"](att)
        hs = hs + self._mlp(hs)
        out = h.clone()
        out[rows, cols] = hs
        return out, (k, v)


class PrunableLlama(nn.Module):
    """A Llama forward over plain tensors; `structure()` + state dict fully describe a pruned model."""

    def __init__(self, structure: dict):
        super().__init__()
        self.config = structure["config"]
        c = self.config
        self.embed = nn.Embedding(c["vocab_size"], c["hidden_size"])
        self.blocks = nn.ModuleList(Block(i, s, c["hidden_size"], c["rms_norm_eps"])
                                    for i, s in enumerate(structure["blocks"]))
        self.norm = RMSNorm(c["hidden_size"], c["rms_norm_eps"])
        self.lm_head = Linear("lm_head", c["vocab_size"], c["hidden_size"])
        self.register_buffer("inv_freq", torch.tensor(c["inv_freq"]), persistent=False)

    @classmethod
    def dense(cls, dims: dict, state: dict, inv_freq: torch.Tensor) -> "PrunableLlama":
        """The unpruned model from Llama sizes and a state dict with transformers' parameter names."""
        dim, heads, kv, hd = dims["hidden_size"], dims["num_attention_heads"], dims["num_key_value_heads"], dims["head_dim"]
        dense = lambda n, k: {"kind": "dense", "n": n, "k": k, "sparse24": False}  # noqa: E731
        inter = dims["intermediate_size"]
        block = {"attn": {"heads": heads, "kv_heads": kv, "head_dim": hd, "q": dense(heads * hd, dim),
                          "k": dense(kv * hd, dim), "v": dense(kv * hd, dim), "o": dense(dim, heads * hd)},
                 "mlp": {"gate": dense(inter, dim), "up": dense(inter, dim), "down": dense(dim, inter)}}
        structure = {"config": {"vocab_size": dims["vocab_size"], "hidden_size": dim,
                                "rms_norm_eps": dims["rms_norm_eps"], "inv_freq": inv_freq.float().tolist()},
                     "blocks": [copy.deepcopy(block) for _ in range(dims["num_hidden_layers"])]}
        model = cls(structure)
        ours = {"embed.weight": "model.embed_tokens.weight", "norm.weight": "model.norm.weight",
                "lm_head.weight": "lm_head.weight"}
        hf_names = {"attn_norm": "input_layernorm", "mlp_norm": "post_attention_layernorm",
                    "attn.q": "self_attn.q_proj", "attn.k": "self_attn.k_proj", "attn.v": "self_attn.v_proj",
                    "attn.o": "self_attn.o_proj", "mlp.gate": "mlp.gate_proj", "mlp.up": "mlp.up_proj",
                    "mlp.down": "mlp.down_proj"}
        for i in range(dims["num_hidden_layers"]):
            for mine, theirs in hf_names.items():
                ours[f"blocks.{i}.{mine}.weight"] = f"model.layers.{i}.{theirs}.weight"
        if "lm_head.weight" not in state:  # tied embeddings
            state = {**state, "lm_head.weight": state["model.embed_tokens.weight"]}
        model.load_state_dict({mine: state[theirs].detach().clone() for mine, theirs in ours.items()})
        return model.to(state["model.embed_tokens.weight"].dtype).eval()

    @classmethod
    def from_hf(cls, hf_model) -> "PrunableLlama":
        cfg = hf_model.config
        rotary = hf_model.model.rotary_emb
        if float(rotary.attention_scaling) != 1.0:
            raise ValueError("only unscaled RoPE is supported (attention_scaling == 1)")
        dims = {k: getattr(cfg, k) for k in ("hidden_size", "num_attention_heads", "num_key_value_heads",
                                             "intermediate_size", "num_hidden_layers", "vocab_size", "rms_norm_eps")}
        dims["head_dim"] = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        return cls.dense(dims, hf_model.state_dict(), rotary.inv_freq)

    @classmethod
    def from_checkpoint(cls, folder) -> "PrunableLlama":
        """A `save_pretrained` Llama folder. Default RoPE is read directly (importing transformers
        costs seconds per job); other RoPE types (e.g. Llama-3's) go through transformers."""
        import json
        from pathlib import Path

        from safetensors.torch import load_file

        folder = Path(folder)
        cfg = json.loads((folder / "config.json").read_text())
        rope = cfg.get("rope_parameters") or {"rope_type": "default", "rope_theta": cfg.get("rope_theta", 10000.0)}
        files = sorted(folder.glob("*.safetensors"))
        if rope.get("rope_type", "default") != "default" or len(files) != 1 or cfg.get("model_type") != "llama":
            from repro.models.causal_lm import load_checkpoint

            return cls.from_hf(load_checkpoint(folder))
        hd = cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"]
        inv_freq = 1.0 / rope["rope_theta"] ** (torch.arange(0, hd, 2, dtype=torch.float) / hd)
        return cls.dense({**cfg, "head_dim": hd}, load_file(str(files[0])), inv_freq)

    def structure(self) -> dict:
        return {"config": self.config, "blocks": [b.structure() for b in self.blocks]}

    def rope(self, positions: torch.Tensor, dtype):
        freqs = positions[:, None].float() * self.inv_freq[None]
        emb = torch.cat([freqs, freqs], dim=-1)
        return emb.cos().to(dtype)[None, None], emb.sin().to(dtype)[None, None]

    def forward(self, ids: torch.Tensor, past: list | None = None, trace: dict | None = None):
        """Logits [B,T,V] and the new KV cache (per layer (k, v) or None for a removed sublayer)."""
        offset = 0 if past is None else next((p[0].shape[2] for p in past if p is not None), 0)
        h = self.embed(ids)
        cos, sin = self.rope(torch.arange(offset, offset + ids.shape[1], device=ids.device), h.dtype)
        if trace is not None:
            trace["tokens"] = trace.get("tokens", 0) + ids.numel()
        cache = []
        for i, block in enumerate(self.blocks):
            h, kv = block(h, cos, sin, None if past is None else past[i], trace)
            cache.append(kv)
        return self.lm_head(self.norm(h)), cache

    def loss(self, ids: torch.Tensor) -> torch.Tensor:
        logits, _ = self(ids)
        return F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]).float(), ids[:, 1:].reshape(-1))


# --------------------------------------------------------------------------- calibration
@torch.no_grad()
def input_norms(model: PrunableLlama, batches: list[torch.Tensor]) -> dict[str, torch.Tensor]:
    """Wanda statistics: ||X_j||_2 over calibration tokens for every linear's input column j."""
    sums: dict[str, torch.Tensor] = {}
    hooks = []
    for module in model.modules():
        if isinstance(module, Linear) and module.name != "lm_head":
            def hook(mod, args):
                x = args[0].reshape(-1, args[0].shape[-1]).float()
                sums[mod.name] = sums.get(mod.name, 0) + x.pow(2).sum(0)
            hooks.append(module.register_forward_pre_hook(hook))
    try:
        for batch in batches:
            model(batch)
    finally:
        for h in hooks:
            h.remove()
    return {name: s.sqrt() for name, s in sums.items()}


@torch.no_grad()
def block_influence(model: PrunableLlama, batches: list[torch.Tensor]) -> dict[str, list[float]]:
    """Mean 1 - cos(h_in, h_out) per sublayer: low = the sublayer barely changes the residual."""
    trace: dict = {}
    for batch in batches:
        model(batch, trace=trace)
    return {kind: [trace[(i, kind)] / trace["tokens"] for i in range(len(model.blocks))]
            for kind in ("attn", "mlp")}


def _scores(n: int, calibrated: torch.Tensor | None, gen: torch.Generator | None) -> torch.Tensor:
    """Importance scores, or seeded random ones (latency runs select at random, as the public code)."""
    if calibrated is not None:
        return calibrated
    return torch.rand(n, generator=gen)


# --------------------------------------------------------------------------- the six transforms
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
    """Every block linear W (N x K) becomes U (N x r) V (r x K) from a truncated SVD."""
    model = copy.deepcopy(model)
    structure = model.structure()
    state = {k: v for k, v in model.state_dict().items()}
    for i, block in enumerate(model.blocks):
        for group, ops in (("attn", ATTN_OPS), ("mlp", MLP_OPS)):
            if structure["blocks"][i][group] is None:
                continue
            for op in ops:
                w = state.pop(f"blocks.{i}.{group}.{op}.weight").float()
                n, k = w.shape
                r = lowrank_rank(n, k, s, rank_multiple)
                u, sv, vh = torch.linalg.svd(w, full_matrices=False)
                root = sv[:r].sqrt()
                state[f"blocks.{i}.{group}.{op}.outer.weight"] = (u[:, :r] * root).to(block_dtype(model))
                state[f"blocks.{i}.{group}.{op}.inner.weight"] = (root[:, None] * vh[:r]).to(block_dtype(model))
                structure["blocks"][i][group][op] = {"kind": "lowrank", "n": n, "k": k, "rank": r}
    return rebuild(model, structure, state), None


def mask_24(scores: torch.Tensor) -> torch.Tensor:
    """Keep the 2 highest-scoring of every 4 consecutive weights along K."""
    n, k = scores.shape
    groups = scores.view(n, k // 4, 4)
    top = groups.topk(2, dim=-1).indices
    mask = torch.zeros_like(groups, dtype=torch.bool).scatter_(-1, top, True)
    return mask.view(n, k)


def prune_sparse24(model, norms: dict | None, gen=None):
    """2:4 on every block linear by the Wanda score |W_ij| * ||X_j|| (random scores for latency)."""
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
                lin.sparse24 = True
    return model, None


def add_routers(model, hidden: int):
    model = copy.deepcopy(model)
    structure = model.structure()
    for b in structure["blocks"]:
        if b["attn"] is None or b["mlp"] is None:
            raise ValueError("dynamic depth needs both sublayers in every layer")
        b["router"] = {"hidden": hidden}
    return rebuild(model, structure, model.state_dict(), new_routers=True)


def train_routers(model, next_batch, *, s: float, steps: int, lr: float, penalty: float) -> list[dict]:
    """Routers only (base frozen): LM loss + penalty * (mean execution - (1 - s))^2, STE gates."""
    for name, p in model.named_parameters():
        p.requires_grad = ".router." in name
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    model.train()
    history = []
    for step in range(steps):
        batch = next_batch(step)
        lm = model.loss(batch)
        mean_exec = torch.stack([b.exec_prob for b in model.blocks]).mean()
        loss = lm + penalty * (mean_exec - (1 - s)) ** 2
        opt.zero_grad()
        loss.backward()
        opt.step()
        history.append({"lm_loss": lm.item(), "mean_exec": mean_exec.item()})
    model.eval()
    for p in model.parameters():
        p.requires_grad = False
    return history


@torch.no_grad()
def calibrate_router_thresholds(model, batches, s: float) -> None:
    """Latency runs: untrained routers, so set each layer's threshold to execute a (1 - s) share."""
    hidden = [model.embed(batch) for batch in batches]
    for block in model.blocks:  # layer by layer: a layer's input depends on the thresholds before it
        probs = torch.cat([block.router.prob(h).flatten() for h in hidden]).float()
        block.router.threshold.fill_(float(torch.quantile(probs, s)))
        for j, h in enumerate(hidden):
            cos, sin = model.rope(torch.arange(h.shape[1], device=h.device), h.dtype)
            hidden[j] = block(h, cos, sin, None)[0]


def add_attn_sparsity(model, s: float, block: int):
    model = copy.deepcopy(model)
    for b in model.blocks:
        b.sparsity = {"block": block, "keep": 1 - s}
    return model, None


def block_dtype(model) -> torch.dtype:
    return model.embed.weight.dtype


def rebuild(model, structure: dict, state: dict | None = None, new_routers: bool = False):
    """A model of the new structure with the surviving weights (removed sublayers are dropped)."""
    new = PrunableLlama(structure).to(block_dtype(model))
    state = state if state is not None else model.state_dict()
    keep = new.state_dict().keys()
    missing = [k for k in keep if k not in state and not (new_routers and ".router." in k)]
    if missing:
        raise KeyError(f"pruned model lacks weights for {missing[:5]}")
    new.load_state_dict({k: v for k, v in state.items() if k in keep}, strict=False)
    return new.eval()


# --------------------------------------------------------------------------- accounting
@torch.no_grad()
def gemms_of(model, ids: torch.Tensor, past=None) -> list[flops.Gemm]:
    """The non-embedding GEMMs of one forward call (the LM head is outside every family's reach)."""
    with flops.record_gemms() as log:
        model(ids, past)
    return [g for g in log if g.name != "lm_head"]


def removed_fraction(dense: list[flops.Gemm], pruned: list[flops.Gemm], by: str) -> float:
    """f: the share of non-embedding FLOPs (prefill) or bytes read (decode) the pruning removed."""
    total = flops.total_flops if by == "flops" else flops.total_bytes
    return max(0.0, 1.0 - total(pruned) / total(dense))


def shape_changes(dense: list[flops.Gemm], pruned: list[flops.Gemm]) -> dict:
    """Which of M/N/K shrank per op, which ops vanished and which were added: the measured taxonomy."""
    def by_name(gemms):
        out = {}
        for g in gemms:
            out.setdefault(g.name, g)
        return out

    d, p = by_name(dense), by_name(pruned)
    dims = set()
    for name in d.keys() & p.keys():
        for dim in ("m", "n", "k"):
            if getattr(p[name], dim) < getattr(d[name], dim):
                dims.add(dim.upper())
    removed = sorted(d.keys() - p.keys())
    added = sorted(n for n in p.keys() - d.keys())
    return {"dims": sorted(dims), "removed": removed, "added": added}


def classify(changes: dict) -> list[str]:
    """Measured family signature comparable with TAXONOMY."""
    if changes["removed"] and not changes["dims"]:
        return ["removed"]
    return changes["dims"]


# --------------------------------------------------------------------------- one entry point
def sparsities_for(family: str, sweep: list[float]) -> list[float]:
    """2:4 removes exactly half of K whatever the sweep says."""
    return [0.5] if family == "sparse24" else sorted(sweep)


def apply_family(model, family: str, s: float, *, calib: list[torch.Tensor], p: dict,
                 gen: torch.Generator | None = None, router_batches=None):
    """Prune `model` with one family at sparsity s.

    With `gen`, selection is seeded-random (latency runs: weights do not matter) and routers get
    thresholds calibrated to execute a (1 - s) share; without it, selection uses calibration
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
        calibrate_router_thresholds(routed, calib, s)
        return routed, None
    if family == "attn_sparsity":
        return add_attn_sparsity(model, s, p["attn_block"])
    raise ValueError(f"unknown pruning family {family!r}; expected one of {FAMILIES}")


def save_pruned(model: PrunableLlama, folder) -> None:
    from safetensors.torch import save_file

    from repro.core.io import atomic_write_json

    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_json(folder / "structure.json", model.structure())
    save_file({k: v.contiguous().cpu() for k, v in model.state_dict().items()}, str(folder / "model.safetensors"))


def load_pruned(folder, device: str = "cpu") -> PrunableLlama:
    from safetensors.torch import load_file

    from repro.core.io import read_json

    state = load_file(str(folder / "model.safetensors"), device=device)
    model = PrunableLlama(read_json(folder / "structure.json")).to(state["embed.weight"].dtype).to(device)
    model.load_state_dict(state)
    return model.eval()
