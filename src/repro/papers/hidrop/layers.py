"""Stage 6: layer analysis of the vanilla arm (every seed), the evidence the paper uses for where to
inject and where to exit (its inter-layer similarity is not public): per layer, the attention mass
the query row puts on visual tokens (softmax over all keys, averaged over heads, with that layer's
own norm, q/k and RoPE), and 1 - cos between each layer's input and output hidden states (block
influence, as in pruninginfersim), over visual and question tokens separately (padding left out)."""
import numpy as np
import torch
import torch.nn.functional as F

from repro.core.stage import StageContext, main
from repro.models.mllm import TinyMLLM
from repro.papers.hidrop import _batches
from repro.papers.hidrop.method import Schedule, forward, query_attention


@torch.no_grad()
def profile(model: TinyMLLM, batch: dict, bos_id: int) -> dict:
    """Per layer: visual attention mass of the query row, and 1 - cos(input, output) of visual and
    text tokens (the last layer's output is the final hidden state before the norm)."""
    dec, n = model.decoder, model.n_visual
    mass, hidden = [], []

    def hook(i, h, positions, v, query):
        mass.append(float(query_attention(dec.blocks[i], dec.rotary, h, positions, query)[:, 1:1 + v].sum(1).mean()))
        hidden.append(h)

    final = {}
    handle = dec.norm.register_forward_pre_hook(lambda mod, args: final.setdefault("h", args[0]))
    try:
        forward(model, Schedule(len(dec.blocks)), batch["images"], batch["text"], batch["last"], bos_id,
                layer_hook=hook)
    finally:
        handle.remove()
    hidden.append(final["h"])
    question = torch.arange(batch["text"].shape[1], device=batch["last"].device) <= batch["last"][:, None]  # no padding

    def change(a, b, keep=None):
        d = 1 - F.cosine_similarity(a, b, dim=-1)
        return (d.mean() if keep is None else d[keep].mean()).item()

    return {"visual_attention": mass,
            "visual_change": [change(a[:, 1:1 + n], b[:, 1:1 + n]) for a, b in zip(hidden, hidden[1:])],
            "text_change": [change(a[:, 1 + n:], b[:, 1 + n:], question) for a, b in zip(hidden, hidden[1:])]}


def run(ctx: StageContext) -> dict:
    p = ctx.params
    words = _batches.words(p["model"])
    split = _batches.load_split(ctx.inputs["data"], "test", words)
    batch = {k: v.to(_batches.device()) for k, v in split.vqa(range(min(len(split), p["layers"]["items"]))).items()}
    per_seed = {}
    for key, folder in sorted(ctx.inputs.items()):
        if key.startswith("finetune_"):
            model = TinyMLLM.load(folder / "model", _batches.device()).eval()
            per_seed[key.rsplit("seed", 1)[1]] = profile(model, batch, words.bos_id)
    mean = {k: np.mean([s[k] for s in per_seed.values()], axis=0).tolist() for k in next(iter(per_seed.values()))}
    return {"per_seed": per_seed, "mean": mean, "items": len(batch["last"])}


if __name__ == "__main__":
    main(run)
