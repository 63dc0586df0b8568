"""Stage 3: the reranker's vision tower. The tiny MLLM (repro.models.mllm) is assembled, and its
vision tower learns, on fresh scenes (never corpus documents), per-visual-token object labels: is
there an object whose centre lies in the token's patch, its shape, colour and size, and where its
centre is (`_vision.TowerProbe` on `_vision.token_labels`). This stands in for a CLIP-style tower
that knows objects; later stages keep it frozen. The embedder's contrastive tower (stage 2) stays the
first stage's and the pruning saliency's. One run, with the workflow's seed. At `paper` (a
pre-trained ViT) it runs 0 steps and only stores the assembled model."""
import numpy as np
import torch

from repro.core.io import atomic_write_json
from repro.core.stage import StageContext, main
from repro.data.scenes import images_to_tensor
from repro.models.mllm import build_mllm
from repro.models.training import tail_mean, train_causal_lm
from repro.papers.minireranker._queries import scene_pool
from repro.papers.minireranker._rerank import device, vocab
from repro.papers.minireranker._vision import ATTRIBUTES, TowerProbe, token_labels


def run(ctx: StageContext) -> dict:
    p, t = ctx.params, ctx.params["tower"]
    torch.manual_seed(ctx.seed)
    model = build_mllm(p["model"], len(vocab()))
    out = {"steps": t["steps"], "params": sum(x.numel() for x in model.parameters())}
    if t["steps"]:
        n_train, n_val = t["scenes"]["train"], t["scenes"]["val"]
        images, scenes = scene_pool((ctx.seed, 21), n_train + n_val, t["objects"], p["model"]["image_size"])
        labels = token_labels(scenes, model.grid)
        probe = TowerProbe(model).to(device())

        def next_batch(step: int) -> dict:
            idx = np.random.default_rng([ctx.seed, 22, step]).integers(n_train, size=t["batch_size"])
            return {"images": images_to_tensor(images[idx]), **{k: v[idx] for k, v in labels.items()}}

        losses = train_causal_lm(probe, next_batch, steps=t["steps"], lr=t["lr"], warmup=t["warmup"],
                                 weight_decay=t["weight_decay"], grad_clip=1.0, desc="vision tower")
        with torch.no_grad():
            pred = probe.predict(images_to_tensor(images[n_train:]).to(device()))
        held = {k: v[n_train:] for k, v in labels.items()}
        present = held["present"]
        out.update(train_loss_last=tail_mean(losses),
                   heldout={"present": float((pred["present"].argmax(-1).cpu() == present.long()).float().mean()),
                            "centre_rmse": float((pred["centre"].cpu()[present] - held["centre"][present]).pow(2)
                                                 .mean().sqrt()),
                            **{a: float((pred[a].argmax(-1).cpu()[present] == held[a][present]).float().mean())
                               for a in ATTRIBUTES}})
        atomic_write_json(ctx.out / "history.json", {"train_loss": losses})
    model.save(ctx.out / "model")
    return out


if __name__ == "__main__":
    main(run)
