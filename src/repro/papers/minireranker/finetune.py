"""Stage 6: fine-tune the pre-trained reranker on one input format with one seed (the seed draws the
training groups: a train query, one of its relevant documents and non-relevant first-stage
candidates, under the listwise + pointwise loss of pre-training), then rerank the test queries'
first-stage candidates with one whole-sequence forward per (query, document) pair; vision-first
also reranks the validation queries."""
import torch

from repro.core.io import atomic_write_json
from repro.core.stage import StageContext, main
from repro.models.mllm import TinyMLLM
from repro.models.training import tail_mean
from repro.papers.minireranker._rerank import device, finetune, load_corpus, rerank, tokens, vocab
from repro.papers.minireranker.method import Arm


def run(ctx: StageContext) -> dict:
    p = ctx.params
    fmt, seed = ctx.wildcards["format"], int(ctx.wildcards["seed"])
    corpus = load_corpus(ctx.inputs["data"], ctx.inputs["embed"])
    tok = tokens(vocab(), p["formats"])
    torch.manual_seed(seed)
    model = TinyMLLM.load(ctx.inputs["model"] / "model", device())
    arm = Arm(fmt=fmt)
    losses = finetune(model, arm, tok, corpus, p["finetune"], stream=(seed, 11), desc=f"fine-tune {fmt}")
    model.save(ctx.out / "model")
    atomic_write_json(ctx.out / "history.json", {"train_loss": losses})
    out = {"format": fmt, "seed": seed, "steps": len(losses), "train_loss_last": tail_mean(losses),
           "test": rerank(model, arm, tok, corpus, "test")}
    if fmt == "vision_first":
        out["val"] = rerank(model, arm, tok, corpus, "val")
    return out


if __name__ == "__main__":
    main(run)
