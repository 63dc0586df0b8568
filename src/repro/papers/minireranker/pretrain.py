"""Stage 5: the reranker's image-first pre-training on minimal pairs. Each group is one fresh scene
that satisfies a templated query and 3-7 single-edit violators of it (one attribute, one object
moved to another side, two objects swapped; `_queries.minimal_group`), drawn on one background; the
pairs are laid out [bos][image][query][prompt], the order MLLMs are pre-trained on (the vision-first
format), and the loss is the listwise softmax over the group's (yes - no) logits plus the pointwise
yes/no cross-entropy (`method.rank_loss`), so P(yes) stays the relevance score. Curriculum: a kind
of query joins the mix at its share of the steps (`curriculum`: attribute, then position, then
relations). The vision tower stays frozen (with `keep_alignment`, the projector and the word
embeddings too); the rest of the LLM trains.

Reported: on fixed held-out groups, the share of groups whose satisfying scene scores highest, per
kind; and zero-shot (no fine-tuning) validation NDCG@10 per kind, reranking the corpus's validation
queries' first-stage candidates (the go/no-go of the spec's amendment reads attribute and
position). One run, with the workflow's seed; every format and seed fine-tunes from it."""
import numpy as np
import torch

from repro.core.io import atomic_write_json
from repro.core.stage import StageContext, main
from repro.data.scenes import backdrop, draw
from repro.models.mllm import TinyMLLM
from repro.models.training import tail_mean, train_causal_lm
from repro.papers.minireranker._queries import minimal_group, text
from repro.papers.minireranker._rerank import (device, freeze, group_batch, load_corpus, means, rerank, tokens,
                                               vocab)
from repro.papers.minireranker.method import Arm, Scorer, score_pairs


def groups_of(rng: np.random.Generator, kinds: list[str], n: int, t: dict, size: int, v) -> dict:
    """A batch of n minimal-pair groups, kinds drawn uniformly from `kinds`; a group's scenes share
    one background, so they differ only by the edit."""
    images, queries, labels, group = [], [], [], []
    for g in range(n):
        p, scenes = minimal_group(rng, kinds[rng.integers(len(kinds))], tuple(t["violators"]), tuple(t["objects"]))
        base = backdrop(size, rng)
        images += [draw(base, s) for s in scenes]
        queries += [v.encode(text(p))] * len(scenes)
        labels += [1] + [0] * (len(scenes) - 1)
        group += [g] * len(scenes)
    return group_batch(np.stack(images), queries, labels, group)


def run(ctx: StageContext) -> dict:
    p, t = ctx.params, ctx.params["pretrain"]
    v = vocab()
    tok = tokens(v, p["formats"])
    size = p["model"]["image_size"]
    torch.manual_seed(ctx.seed)
    model = TinyMLLM.load(ctx.inputs["align"] / "model", device())
    freeze(model, t)
    scorer = Scorer(model, Arm(), tok, t["pointwise"])
    entry = {k: round(share * t["steps"]) for k, share in t["curriculum"].items()}

    def next_batch(step: int) -> dict:
        rng = np.random.default_rng([ctx.seed, 3, step])
        return groups_of(rng, [k for k, s in entry.items() if s <= step], t["groups"], t, size, v)

    out = {"steps": t["steps"], "curriculum_entry_step": entry}
    if t["steps"]:
        losses = train_causal_lm(scorer, next_batch, steps=t["steps"], lr=t["lr"], warmup=t["warmup"],
                                 weight_decay=t["weight_decay"], grad_clip=1.0, desc="minimal-pair pre-training")
        atomic_write_json(ctx.out / "history.json", {"train_loss": losses})
        held = {}
        with torch.no_grad():
            for code, kind in enumerate(t["curriculum"]):
                b = groups_of(np.random.default_rng([ctx.seed, 4, code]), [kind], t["heldout_groups"], t, size, v)
                queries = [row[:n].tolist() for row, n in zip(b["query_ids"], b["query_len"])]
                yn = score_pairs(model, Arm(), tok, b["images"].to(device()), queries).cpu()
                margin = yn[:, 0] - yn[:, 1]
                top = [int(margin[b["group"] == g].argmax()) == 0 for g in range(t["heldout_groups"])]
                held[kind] = float(np.mean(top))
        out.update(train_loss_last=tail_mean(losses), heldout_group_top1=held)
    corpus = load_corpus(ctx.inputs["data"], ctx.inputs["embed"])
    val = rerank(model, Arm(), tok, corpus, "val")
    gate = [r for r in val["per_query"].values() if r["kind"] in t["gate_kinds"]]
    out["zero_shot_val"] = {"by_kind": val["by_kind"], "gate_kinds": t["gate_kinds"], "gate": means(gate)}
    model.save(ctx.out / "model")
    return out


if __name__ == "__main__":
    main(run)
