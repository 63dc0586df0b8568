"""Stage 8: one rung of the ladder with one seed. The dense vision-first model of that seed, with
the rung's mechanisms (early exit at L_e; + the interaction band; + embedder-guided pruning to a
share r, the positions of `positions`), fine-tuned for the adaptation steps (the seed draws the
groups), then reranking validation and test queries the way it is deployed: every candidate
document's KV cache computed once, each query run against the caches. The `dense` rung (no exit,
band or pruning) gets the same adaptation steps: the reference the rungs' quality is compared with,
so a rung cannot look better than dense from extra training alone."""
import torch

from repro.core.io import atomic_write_json, read_json
from repro.core.stage import StageContext, main
from repro.models.mllm import TinyMLLM
from repro.models.training import tail_mean
from repro.papers.minireranker._rerank import device, finetune, load_corpus, rerank, tokens, vocab
from repro.papers.minireranker.method import Arm


def run(ctx: StageContext) -> dict:
    p = ctx.params
    name, seed = ctx.wildcards["rung"], int(ctx.wildcards["seed"])
    corpus = load_corpus(ctx.inputs["data"], ctx.inputs["embed"])
    tok = tokens(vocab(), p["formats"])
    selection = read_json(ctx.inputs["select"] / "selection.json")
    arm = Arm.rung(p["ladder"][name], selection, p["positions"])
    torch.manual_seed(seed)
    model = TinyMLLM.load(ctx.inputs["dense"] / "model", device())
    losses = finetune(model, arm, tok, corpus, p["adapt"], stream=(seed, 17), desc=f"adapt {name}")
    atomic_write_json(ctx.out / "history.json", {"train_loss": losses})
    return {"rung": name, "seed": seed, "arm": {"exit": arm.exit, "band": arm.band, "keep": arm.keep,
                                                 "positions": arm.positions},
            "steps": len(losses), "train_loss_last": tail_mean(losses),
            "val": rerank(model, arm, tok, corpus, "val", cached=True),
            "test": rerank(model, arm, tok, corpus, "test", cached=True)}


if __name__ == "__main__":
    main(run)
