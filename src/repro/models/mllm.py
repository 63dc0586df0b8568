"""A tiny LLaVA-style multimodal LM: patch embedder -> MLP projector -> the shared per-layer Decoder.

The vision side is `repro.models.vit` (built from sizes, or a hub ViT at the `paper` profile); with
`num_hidden_layers: 0` it is a linear patch tokeniser with learned grid positions. The projector is
LLaVA-1.5's two-layer GELU MLP. The language side is `repro.models.decoder.Decoder` (built from Llama
sizes through transformers' config and initialisation, or a hub Llama), so every per-layer
mechanism of that decoder works here: per-row positions, additive masks, KV caches, early exit and
a `before_layer` hook through which a method changes the token set (visual tokens dropped, injected
late with their own positions) or the mask of each layer.

The model does not fix where the image goes: a paper lays out its sequence with `splice` (text
embeddings and visual tokens in any order, with positions) and calls `decoder(inputs_embeds=...)`.

Checkpoint: config.json {"vision": ViT sizes, "image_size", "projector": {"hidden"}, "decoder": the
decoder structure} + model.safetensors, through repro.models.checkpoint.
"""
from __future__ import annotations

import torch
from torch import nn

from repro.models import checkpoint
from repro.models.decoder import Decoder
from repro.models.vit import SIZE_KEYS, ViT, build_vit, resize_grid


class TinyMLLM(nn.Module):
    def __init__(self, config: dict, vision: ViT | None = None, grid_embed: torch.Tensor | None = None,
                 decoder: Decoder | None = None):
        super().__init__()
        self.config = config
        v = config["vision"]
        self.vision = vision or ViT(**{k: v[k] for k in SIZE_KEYS}, layer_norm_eps=v.get("layer_norm_eps", 1e-6))
        patch = v["patch_size"]
        if config["image_size"] % patch:
            raise ValueError(f"image_size {config['image_size']} is not a multiple of the patch size {patch}")
        self.grid = config["image_size"] // patch
        pos = torch.randn(self.grid * self.grid, v["hidden_size"]) * 0.02 if grid_embed is None \
            else resize_grid(grid_embed, self.grid)
        self.pos = nn.Parameter(pos)
        self.decoder = decoder or Decoder(config["decoder"])
        dim, hidden = self.decoder.config["hidden_size"], config["projector"]["hidden"]
        self.projector = nn.Sequential(nn.Linear(v["hidden_size"], hidden), nn.GELU(), nn.Linear(hidden, dim))

    @property
    def n_visual(self) -> int:
        """Visual tokens per image."""
        return self.grid * self.grid

    def vision_features(self, images: torch.Tensor) -> torch.Tensor:
        """float [B, 3, H, W] (see repro.data.scenes.images_to_tensor) -> the vision tower's normed
        outputs [B, N, vision hidden], what the projector reads."""
        x = self.vision.patch_embed(images) + self.pos
        for block in self.vision.blocks:
            x = block(x)
        return self.vision.norm(x)

    def visual_tokens(self, images: torch.Tensor) -> torch.Tensor:
        """float [B, 3, H, W] -> projector outputs [B, N, D]."""
        return self.projector(self.vision_features(images))

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        return self.decoder.embed(ids)

    def forward(self, **kwargs):
        """The decoder's forward (logits, cache); see `Decoder.forward`."""
        return self.decoder(**kwargs)

    def save(self, folder) -> None:
        config = {**self.config, "vision": dict(self.vision.config), "decoder": self.decoder.structure()}
        checkpoint.save(folder, config, self.state_dict())

    @classmethod
    def load(cls, folder, device: str = "cpu") -> TinyMLLM:
        config, state = checkpoint.load(folder, device)
        model = cls(config).to(device)
        model.load_state_dict(state)
        return model.eval()


def splice(parts: list[torch.Tensor]) -> torch.Tensor:
    """Concatenate [B, T_i, D] segments (text embeddings, visual tokens) along the sequence."""
    return torch.cat(parts, dim=1)


def build_mllm(spec: dict, vocab_size: int) -> TinyMLLM:
    """`spec`: {vision: ViT sizes or {pretrained}, image_size, projector: {hidden}, llm: Llama sizes
    (repro.models.causal_lm) or {pretrained}}. A pretrained LLM keeps its own vocabulary; a fresh one
    gets `vocab_size`."""
    from repro.models.causal_lm import build_causal_lm

    vision, grid_embed = build_vit(spec["vision"])
    llm = build_causal_lm(spec["llm"], None if spec["llm"].get("pretrained") else vocab_size)
    decoder = Decoder.from_hf(llm).train()
    config = {"vision": dict(vision.config), "image_size": spec["image_size"], "projector": dict(spec["projector"]),
              "decoder": decoder.structure()}
    return TinyMLLM(config, vision, grid_embed, decoder)
