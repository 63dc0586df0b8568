"""Stage 4: alignment (LLaVA's stage 1 analogue). With the vision tower frozen and the LLM's word
embeddings as targets, only the projector trains: each visual token is mapped toward the sum of the
word embeddings of its object's "size colour shape" phrase (the embedding of `<image>` where its
patch holds no object; `_vision.alignment_targets`), on fresh scenes, so that matching a query word
to the visual tokens becomes close to lexical. Held out: for every token that holds an object and
each attribute, whether its projected token is nearest (dot product) to the right word of that
attribute."""
import numpy as np
import torch

from repro.core.io import atomic_write_json
from repro.core.stage import StageContext, main
from repro.data.scenes import images_to_tensor
from repro.models.mllm import TinyMLLM
from repro.models.training import tail_mean, train_causal_lm
from repro.papers.minireranker._queries import scene_pool
from repro.papers.minireranker._rerank import device, vocab
from repro.papers.minireranker._vision import ATTRIBUTES, Aligner, token_labels


def run(ctx: StageContext) -> dict:
    p, t = ctx.params, ctx.params["align"]
    v = vocab()
    torch.manual_seed(ctx.seed)
    model = TinyMLLM.load(ctx.inputs["tower"] / "model", device())
    for x in model.parameters():
        x.requires_grad_(False)
    for x in model.projector.parameters():
        x.requires_grad_(True)
    words = {a: [v.index[w] for w in values] for a, values in ATTRIBUTES.items()}
    out = {"steps": t["steps"]}
    if t["steps"]:
        n_train, n_val = t["scenes"]["train"], t["scenes"]["val"]
        images, scenes = scene_pool((ctx.seed, 23), n_train + n_val, t["objects"], p["model"]["image_size"])
        labels = token_labels(scenes, model.grid)

        def next_batch(step: int) -> dict:
            idx = np.random.default_rng([ctx.seed, 24, step]).integers(n_train, size=t["batch_size"])
            return {"images": images_to_tensor(images[idx]), **{k: x[idx] for k, x in labels.items()}}

        losses = train_causal_lm(Aligner(model, words, v.image_id), next_batch, steps=t["steps"], lr=t["lr"],
                                 warmup=t["warmup"], weight_decay=t["weight_decay"], grad_clip=1.0, desc="alignment")
        with torch.no_grad():
            visual = model.visual_tokens(images_to_tensor(images[n_train:]).to(device())).cpu()
        table = model.decoder.embed.weight.detach().cpu()
        present = labels["present"][n_train:]
        out.update(train_loss_last=tail_mean(losses),
                   heldout_nearest_word={a: float(((visual @ table[words[a]].T).argmax(-1)[present]
                                                   == labels[a][n_train:][present]).float().mean())
                                         for a in ATTRIBUTES})
        atomic_write_json(ctx.out / "history.json", {"train_loss": losses})
    model.save(ctx.out / "model")
    return out


if __name__ == "__main__":
    main(run)
