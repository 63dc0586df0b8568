"""A Llama-style decoder over plain tensor ops, for papers that change what each layer computes.

Read bottom-up: Linear (reports its GEMM) -> RMSNorm -> RoPE -> attention -> MLP -> Block -> Decoder.
Every matrix product reports its logical (M, N, K), FLOPs and bytes to `repro.core.flops`, so the
work a variant removes is measured from what ran. Each batch row carries its own positions [B, T]
and the model takes an optional additive mask, so a layer may see a subset of the tokens (dropped,
padded) while the kept tokens keep their positions.

A JSON-able structure plus the state dict describe a model completely (`save` / `load`: config.json
+ model.safetensors through repro.models.checkpoint):
  {"config": {"vocab_size", "hidden_size", "rms_norm_eps", "inv_freq": [...]},
   "blocks": [{"attn": {"heads", "kv_heads", "head_dim", "q", "k", "v", "o": linear} | None,
               "mlp": {"gate", "up", "down": linear} | None}, ...]}
  linear = {"kind": "dense", "n": out features, "k": in features, "declared_k": int | None}
A None sublayer is removed (identity). Subclasses add block keys and linear kinds (see Block).
"""
from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from repro.core import flops
from repro.models import checkpoint

ATTN_OPS = ("q", "k", "v", "o")
MLP_OPS = ("gate", "up", "down")
# our parameter names -> transformers' Llama names, per layer
HF_LAYER_NAMES = {"attn_norm": "input_layernorm", "mlp_norm": "post_attention_layernorm",
                  "attn.q": "self_attn.q_proj", "attn.k": "self_attn.k_proj", "attn.v": "self_attn.v_proj",
                  "attn.o": "self_attn.o_proj", "mlp.gate": "mlp.gate_proj", "mlp.up": "mlp.up_proj",
                  "mlp.down": "mlp.down_proj"}


class Linear(nn.Module):
    """y = x W^T (+ b), reporting the GEMM it executes: M tokens, N out features, K in features.

    `declared_k` is the reduction size the weights are meant to run with on a kernel this code does
    not have (2:4 sparsity keeps half of K): it is recorded beside the executed K, never instead.
    """

    def __init__(self, name: str, n: int, k: int, bias: bool = False, declared_k: int | None = None):
        super().__init__()
        self.name = name
        self.weight = nn.Parameter(torch.zeros(n, k))
        self.bias = nn.Parameter(torch.zeros(n)) if bias else None
        self.declared_k = declared_k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if flops.recording():
            n, k = self.weight.shape
            flops.record(self.name, x.numel() // k, n, k, nbytes=n * k * self.weight.element_size(),
                         declared_k=self.declared_k)
        return F.linear(x, self.weight, self.bias)

    def structure(self) -> dict:
        n, k = self.weight.shape
        return {"kind": "dense", "n": n, "k": k, "declared_k": self.declared_k}


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


def rope_inv_freq(theta: float, head_dim: int) -> torch.Tensor:
    """Default (unscaled) RoPE frequencies."""
    return 1.0 / theta ** (torch.arange(0, head_dim, 2, dtype=torch.float) / head_dim)


class Rotary(nn.Module):
    """cos and sin [B, 1, T, head_dim] of per-row positions [B, T]."""

    def __init__(self, inv_freq):
        super().__init__()
        self.register_buffer("inv_freq", torch.tensor(inv_freq), persistent=False)

    def forward(self, positions: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        freqs = positions[..., None].float() * self.inv_freq
        emb = torch.cat([freqs, freqs], dim=-1)
        return emb.cos().to(dtype)[:, None], emb.sin().to(dtype)[:, None]


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    return x * cos + rotate_half(x) * sin


def additive(visible: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A boolean visibility mask as an additive one: 0 where visible, -inf where hidden."""
    return torch.zeros(visible.shape, dtype=dtype, device=visible.device).masked_fill(~visible, float("-inf"))


def causal_mask(q_index: torch.Tensor, tk: int, dtype: torch.dtype) -> torch.Tensor:
    """[B, 1, Tq, tk]: each query (index [B, Tq] on the key axis) sees the keys up to its own."""
    return additive(torch.arange(tk, device=q_index.device) <= q_index[..., None], dtype)[:, None]


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None,
              name: str = "attn") -> torch.Tensor:
    """softmax(q k^T / sqrt(d) + mask) v; q [B,H,Tq,d], k/v [B,Hkv,Tk,d] with H a multiple of Hkv.

    mask None: causal, the queries being the last Tq of the Tk keys (a decode query sees the whole
    cache). Otherwise an additive mask [B,1,Tq,Tk] (0 visible, -inf hidden) in which every query sees
    at least one key. qk and av are recorded with the share of (query, key) pairs that is visible.
    """
    b, h, tq, d = q.shape
    tk = k.shape[2]
    if mask is None and 1 < tq < tk:  # a chunk after a cache: causal, aligned to the last key
        mask = causal_mask(torch.arange(tk - tq, tk, device=q.device).expand(b, tq), tk, q.dtype)
    if flops.recording():
        if mask is None:
            density = (tk + 1) / (2 * tk) if tq > 1 else 1.0
        else:
            density = float(torch.isfinite(mask).float().mean())
        kv_bytes = k.numel() * k.element_size()
        flops.record(f"{name}.qk", tq, tk, d, count=b * h, density=density, nbytes=kv_bytes)
        flops.record(f"{name}.av", tq, d, tk, count=b * h, density=density, nbytes=kv_bytes)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=mask is None and tq > 1,
                                          enable_gqa=k.shape[1] != h)


class Attention(nn.ModuleDict):
    """The q/k/v/o projections of grouped-query attention; the kernel is passed in (Block.attend)."""

    def __init__(self, heads: int, kv_heads: int, head_dim: int, linears: dict[str, nn.Module]):
        super().__init__(linears)
        self.heads, self.kv_heads, self.head_dim = heads, kv_heads, head_dim

    def heads_of(self, y: torch.Tensor, heads: int) -> torch.Tensor:
        """[B, T, heads * d] -> [B, heads, T, d]"""
        b, t, _ = y.shape
        return y.view(b, t, heads, self.head_dim).transpose(1, 2)

    def keys_values(self, x, rope, past):
        """Rotated K and V of x [B,T,D], appended to this layer's cache `past` ((k, v) or None)."""
        k = apply_rope(self.heads_of(self["k"](x), self.kv_heads), *rope)
        v = self.heads_of(self["v"](x), self.kv_heads)
        if past is not None:
            k = torch.cat([past[0], k], dim=2)
            v = torch.cat([past[1], v], dim=2)
        return k, v

    def forward(self, x, rope, mask, past, attend: Callable):
        """(o projection of the attention output [B,T,D], the layer's new cache (k, v))."""
        k, v = self.keys_values(x, rope, past)
        q = apply_rope(self.heads_of(self["q"](x), self.heads), *rope)
        b, t, _ = x.shape
        out = attend(q, k, v, mask).transpose(1, 2).reshape(b, t, -1)
        return self["o"](out), (k, v)


class MLP(nn.ModuleDict):
    """SwiGLU: down(silu(gate(x)) * up(x))."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self["down"](F.silu(self["gate"](x)) * self["up"](x))


class Block(nn.Module):
    """One layer: h + attn(norm(h)), then h + mlp(norm(h)); a None sublayer is removed.

    Subclass hooks: `linear` builds a projection from its spec (other kinds, e.g. low rank), `attend`
    is the attention kernel, and `forward` may be replaced whole (e.g. routing tokens past the layer).
    """

    def __init__(self, idx: int, spec: dict, dim: int, eps: float):
        super().__init__()
        self.idx = idx
        a, m = spec["attn"], spec["mlp"]
        self.attn_norm = RMSNorm(dim, eps) if a else None
        self.attn = Attention(a["heads"], a["kv_heads"], a["head_dim"],
                              {op: self.linear(f"L{idx}.{op}", a[op]) for op in ATTN_OPS}) if a else None
        self.mlp_norm = RMSNorm(dim, eps) if m else None
        self.mlp = MLP({op: self.linear(f"L{idx}.{op}", m[op]) for op in MLP_OPS}) if m else None

    def linear(self, name: str, spec: dict) -> nn.Module:
        if spec["kind"] != "dense":
            raise ValueError(f"{name}: unknown linear kind {spec['kind']!r}")
        return Linear(name, spec["n"], spec["k"], declared_k=spec.get("declared_k"))

    def attend(self, q, k, v, mask):
        return attention(q, k, v, mask, f"L{self.idx}.attn")

    def structure(self) -> dict:
        attn = None
        if self.attn is not None:
            a = self.attn
            attn = {"heads": a.heads, "kv_heads": a.kv_heads, "head_dim": a.head_dim,
                    **{op: a[op].structure() for op in ATTN_OPS}}
        mlp = None if self.mlp is None else {op: self.mlp[op].structure() for op in MLP_OPS}
        return {"attn": attn, "mlp": mlp}

    def forward(self, h, rope, mask=None, past=None):
        """(h [B,T,D] after the layer, its new cache (k, v), or None without attention)."""
        kv = None
        if self.attn is not None:
            delta, kv = self.attn(self.attn_norm(h), rope, mask, past, self.attend)
            h = h + delta
        if self.mlp is not None:
            h = h + self.mlp(self.mlp_norm(h))
        return h, kv


def keep_tokens(keep: torch.Tensor, h: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor | None):
    """The tokens at indices `keep` [B, T'] of each row: hidden states, positions (they keep theirs)
    and, of the mask, their rows and their columns among the current tokens (cached columns stay)."""
    keep = keep.sort(dim=1).values  # ascending, so causal order among the kept tokens holds
    h = h.gather(1, keep[..., None].expand(-1, -1, h.shape[-1]))
    if mask is not None:
        b, heads, t, tk = mask.shape
        past = tk - t
        cols = torch.cat([torch.arange(past, device=keep.device).expand(b, past), keep + past], dim=1)
        mask = mask.gather(2, keep[:, None, :, None].expand(-1, heads, -1, tk))
        mask = mask.gather(3, cols[:, None, None, :].expand(-1, heads, keep.shape[1], -1))
    return h, positions.gather(1, keep), mask


class Decoder(nn.Module):
    """Embeddings -> blocks -> final norm -> LM head, over a structure (see the module docstring)."""

    block_cls = Block

    def __init__(self, structure: dict):
        super().__init__()
        self.config = c = structure["config"]
        self.embed = nn.Embedding(c["vocab_size"], c["hidden_size"])
        self.blocks = nn.ModuleList(self.block_cls(i, s, c["hidden_size"], c["rms_norm_eps"])
                                    for i, s in enumerate(structure["blocks"]))
        self.norm = RMSNorm(c["hidden_size"], c["rms_norm_eps"])
        self.lm_head = Linear("lm_head", c["vocab_size"], c["hidden_size"])
        self.rotary = Rotary(c["inv_freq"])

    def structure(self) -> dict:
        return {"config": self.config, "blocks": [b.structure() for b in self.blocks]}

    def forward(self, ids: torch.Tensor | None = None, past: list | None = None, *,
                inputs_embeds: torch.Tensor | None = None, positions: torch.Tensor | None = None,
                mask: torch.Tensor | None = None, before_layer: Callable | None = None,
                exit_after: int | None = None):
        """Logits [B, T_last, V] and the new cache (per layer (k, v), None for a removed attention).

        ids [B, T], or inputs_embeds [B, T, D] (e.g. projected image patches). positions [B, T]:
        default the cache length onwards. mask: additive [B, 1, T, P + T] over the P cached keys then
        the current tokens (0 visible, -inf hidden; every row sees some key); default causal. With a
        cache whose length differs per layer (tokens dropped in an earlier call), leave mask None.
        past: the cache a previous call returned. exit_after: run only that many blocks (early exit).
        before_layer(i, h, positions, mask) is called before block i and returns None (no change) or
        the (h, positions, mask) that block i and the later ones process: tokens may leave (see
        `keep_tokens`: no K/V from layer i on, the kept ones keep their positions), enter (e.g. visual
        tokens injected at a late layer with their own positions) or see a per-layer mask. The
        logits are those of the tokens the last block processed.
        """
        h = self.embed(ids) if inputs_embeds is None else inputs_embeds
        b, t, _ = h.shape
        if positions is None:
            offset = 0 if past is None else next((p[0].shape[2] for p in past if p is not None), 0)
            positions = torch.arange(offset, offset + t, device=h.device).expand(b, t)
        if mask is not None:
            mask = mask.to(h.dtype).expand(b, -1, -1, -1)
        rope = self.rotary(positions, h.dtype)
        cache = []
        for i, block in enumerate(self.blocks):
            if i == exit_after:
                break
            changed = None if before_layer is None else before_layer(i, h, positions, mask)
            if changed is not None:
                h, positions, mask = changed
                rope = self.rotary(positions, h.dtype)
            h, kv = block(h, rope, mask, None if past is None else past[i])
            cache.append(kv)
        return self.lm_head(self.norm(h)), cache

    def loss(self, ids: torch.Tensor) -> torch.Tensor:
        logits, _ = self(ids)
        return F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]).float(), ids[:, 1:].reshape(-1))

    # -- construction from transformers' Llama, and our own checkpoints
    @classmethod
    def dense(cls, dims: dict, state: dict, inv_freq: torch.Tensor):
        """The full model from Llama sizes and a state dict with transformers' parameter names."""
        dim, heads, kv, hd = dims["hidden_size"], dims["num_attention_heads"], dims["num_key_value_heads"], dims["head_dim"]
        inter = dims["intermediate_size"]
        dense = lambda n, k: {"kind": "dense", "n": n, "k": k, "declared_k": None}  # noqa: E731
        block = {"attn": {"heads": heads, "kv_heads": kv, "head_dim": hd, "q": dense(heads * hd, dim),
                          "k": dense(kv * hd, dim), "v": dense(kv * hd, dim), "o": dense(dim, heads * hd)},
                 "mlp": {"gate": dense(inter, dim), "up": dense(inter, dim), "down": dense(dim, inter)}}
        structure = {"config": {"vocab_size": dims["vocab_size"], "hidden_size": dim,
                                "rms_norm_eps": dims["rms_norm_eps"], "inv_freq": inv_freq.float().tolist()},
                     "blocks": [copy.deepcopy(block) for _ in range(dims["num_hidden_layers"])]}
        model = cls(structure)
        ours = {"embed.weight": "model.embed_tokens.weight", "norm.weight": "model.norm.weight",
                "lm_head.weight": "lm_head.weight"}
        for i in range(dims["num_hidden_layers"]):
            for mine, theirs in HF_LAYER_NAMES.items():
                ours[f"blocks.{i}.{mine}.weight"] = f"model.layers.{i}.{theirs}.weight"
        if "lm_head.weight" not in state:  # tied embeddings
            state = {**state, "lm_head.weight": state["model.embed_tokens.weight"]}
        model.load_state_dict({mine: state[theirs].detach().clone() for mine, theirs in ours.items()})
        return model.to(state["model.embed_tokens.weight"].dtype).eval()

    @classmethod
    def from_hf(cls, hf_model):
        """A transformers Llama (unscaled RoPE)."""
        cfg = hf_model.config
        rotary = hf_model.model.rotary_emb
        if float(rotary.attention_scaling) != 1.0:
            raise ValueError("only unscaled RoPE is supported (attention_scaling == 1)")
        dims = {k: getattr(cfg, k) for k in ("hidden_size", "num_attention_heads", "num_key_value_heads",
                                             "intermediate_size", "num_hidden_layers", "vocab_size", "rms_norm_eps")}
        dims["head_dim"] = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        return cls.dense(dims, hf_model.state_dict(), rotary.inv_freq)

    @classmethod
    def from_checkpoint(cls, folder):
        """A `save_pretrained` Llama folder. Default RoPE is read directly (importing transformers
        costs seconds per job); other RoPE types (e.g. Llama-3's) and sharded weights go through
        transformers."""
        folder = Path(folder)
        cfg = json.loads((folder / checkpoint.CONFIG).read_text())
        rope = cfg.get("rope_parameters") or {"rope_type": "default", "rope_theta": cfg.get("rope_theta", 10000.0)}
        if (rope.get("rope_type", "default") != "default" or cfg.get("model_type") != "llama"
                or not (folder / checkpoint.WEIGHTS).is_file()):
            from repro.models.causal_lm import load_checkpoint

            return cls.from_hf(load_checkpoint(folder))
        hd = cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"]
        _, state = checkpoint.load(folder)
        return cls.dense({**cfg, "head_dim": hd}, state, rope_inv_freq(rope["rope_theta"], hd))

    def save(self, folder) -> None:
        """config.json = the structure, model.safetensors = the weights."""
        checkpoint.save(folder, self.structure(), self.state_dict())

    @classmethod
    def load(cls, folder, device: str = "cpu"):
        structure, state = checkpoint.load(folder, device)
        model = cls(structure).to(state["embed.weight"].dtype).to(device)
        model.load_state_dict(state)
        return model.eval()
