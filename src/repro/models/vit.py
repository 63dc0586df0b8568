"""A plain pre-norm ViT in pure torch: patch embedder, blocks, final norm.

Built from sizes (CPU scale) or from a Hugging Face ViT checkpoint (`pretrained`: hub name or local
`save_pretrained` folder), whose weights are mapped in, so every later stage is the same code at
every profile. A block exposes its two halves, `attend` and `feed_forward`, so a method can act on
the tokens between them (token pruning); `attend` returns the softmax attention probabilities only
when asked, and otherwise uses PyTorch's fused SDPA.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

SIZE_KEYS = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "patch_size")


class PatchEmbed(nn.Module):
    """Non-overlapping p x p patches -> linear projection (a stride-p convolution, written as matmul)."""

    def __init__(self, patch: int, dim: int, channels: int = 3):
        super().__init__()
        self.patch = patch
        self.proj = nn.Linear(channels * patch * patch, dim)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """[B, C, H, W] -> [B, (H/p) * (W/p), dim], row-major over the patch grid."""
        B, C, H, W = images.shape
        p = self.patch
        x = images.reshape(B, C, H // p, p, W // p, p).permute(0, 2, 4, 1, 3, 5)
        return self.proj(x.reshape(B, (H // p) * (W // p), C * p * p))


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        if dim % heads:
            raise ValueError(f"hidden size {dim} is not divisible by {heads} heads")
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, need_probs: bool = False):
        B, N, D = x.shape
        q, k, v = self.qkv(x).view(B, N, 3, self.heads, D // self.heads).permute(2, 0, 3, 1, 4)
        if need_probs:  # eager: the caller needs this block's softmax probabilities
            probs = (q @ k.transpose(-2, -1) / math.sqrt(D // self.heads)).softmax(-1)
            out = probs @ v
        else:
            probs, out = None, F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(B, N, D)), probs


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, hidden: int, eps: float = 1e-6):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def attend(self, x: torch.Tensor, need_probs: bool = False):
        out, probs = self.attn(self.norm1(x), need_probs)
        return x + out, probs

    def feed_forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.fc2(F.gelu(self.fc1(self.norm2(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.feed_forward(self.attend(x)[0])


class ViT(nn.Module):
    """Patch embedder + blocks + final norm; position embeddings belong to the caller's grids."""

    def __init__(self, hidden_size: int, num_hidden_layers: int, num_attention_heads: int,
                 intermediate_size: int, patch_size: int, layer_norm_eps: float = 1e-6):
        super().__init__()
        self.config = {"hidden_size": hidden_size, "num_hidden_layers": num_hidden_layers,
                       "num_attention_heads": num_attention_heads, "intermediate_size": intermediate_size,
                       "patch_size": patch_size, "layer_norm_eps": layer_norm_eps}
        self.patch_embed = PatchEmbed(patch_size, hidden_size)
        self.blocks = nn.ModuleList(Block(hidden_size, num_attention_heads, intermediate_size, layer_norm_eps)
                                    for _ in range(num_hidden_layers))
        self.norm = nn.LayerNorm(hidden_size, eps=layer_norm_eps)
        self.apply(_init)

    @property
    def dim(self) -> int:
        return self.config["hidden_size"]


def _init(m: nn.Module) -> None:
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        nn.init.zeros_(m.bias)


def resize_grid(embed: torch.Tensor, grid: int) -> torch.Tensor:
    """Position embeddings [g * g, D] of a square grid, bicubically resized to [grid * grid, D]."""
    g = int(round(math.sqrt(embed.shape[0])))
    if g == grid:
        return embed.clone()
    x = embed.reshape(1, g, g, -1).permute(0, 3, 1, 2)
    x = F.interpolate(x, size=(grid, grid), mode="bicubic", align_corners=False)
    return x.permute(0, 2, 3, 1).reshape(grid * grid, -1)


def from_hf(name: str) -> tuple[ViT, torch.Tensor]:
    """A transformers ViT checkpoint mapped into ViT; also its patch position embeddings [g*g, D]
    (the [CLS] slot dropped), for the caller to resize to its own grids."""
    from transformers import ViTModel

    hf = ViTModel.from_pretrained(name, add_pooling_layer=False)
    cfg = hf.config
    if cfg.hidden_act != "gelu" or cfg.num_channels != 3:
        raise ValueError(f"{name}: expected a gelu ViT on RGB images, got {cfg.hidden_act} / {cfg.num_channels}")
    vit = ViT(cfg.hidden_size, cfg.num_hidden_layers, cfg.num_attention_heads, cfg.intermediate_size,
              cfg.patch_size, cfg.layer_norm_eps)
    sd = hf.state_dict()
    conv = sd["embeddings.patch_embeddings.projection.weight"]  # [D, C, p, p]
    new = {"patch_embed.proj.weight": conv.reshape(conv.shape[0], -1),  # matches PatchEmbed's (C, p, p) order
           "patch_embed.proj.bias": sd["embeddings.patch_embeddings.projection.bias"],
           "norm.weight": sd["layernorm.weight"], "norm.bias": sd["layernorm.bias"]}
    for i in range(cfg.num_hidden_layers):  # module names of transformers 5 (older checkpoints are renamed on load)
        src, dst = f"layers.{i}.", f"blocks.{i}."
        for part in ("weight", "bias"):
            new[dst + f"attn.qkv.{part}"] = torch.cat([sd[src + f"attention.{n}_proj.{part}"] for n in "qkv"])
            new[dst + f"attn.proj.{part}"] = sd[src + f"attention.o_proj.{part}"]
            new[dst + f"norm1.{part}"] = sd[src + f"layernorm_before.{part}"]
            new[dst + f"norm2.{part}"] = sd[src + f"layernorm_after.{part}"]
            new[dst + f"fc1.{part}"] = sd[src + f"mlp.fc1.{part}"]
            new[dst + f"fc2.{part}"] = sd[src + f"mlp.fc2.{part}"]
    vit.load_state_dict(new)
    return vit, sd["embeddings.position_embeddings"][0, 1:].clone()


def build_vit(spec: dict) -> tuple[ViT, torch.Tensor | None]:
    """`spec` names a `pretrained` checkpoint or gives SIZE_KEYS; returns (vit, pretrained grid
    position embeddings or None)."""
    if spec.get("pretrained"):
        return from_hf(spec["pretrained"])
    return ViT(**{k: spec[k] for k in SIZE_KEYS}, layer_norm_eps=spec.get("layer_norm_eps", 1e-6)), None
