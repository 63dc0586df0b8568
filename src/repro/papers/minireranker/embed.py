"""Stage 2: the first stage. A dual-encoder embedder (ViT with a CLS token + a text transformer)
trained with InfoNCE on the train queries (each query against its positive, the batch's other
positives and one random non-relevant document), then: every query's top-K documents by cosine similarity (the
candidates the reranker reranks), the first stage's own NDCG@10 / MRR / Hit@1 per query (beside what
reranking its candidates can score: in random order and sorted by relevance), and every
document's visual-token scores for pruning (the last block's CLS->patch attention: query-agnostic).
One run, with the workflow's seed: every reranker arm and seed reranks the same candidates."""
import numpy as np
import torch

from repro.core.io import atomic_write_json
from repro.core.stage import StageContext, main
from repro.data.scenes import images_to_tensor
from repro.models import checkpoint
from repro.models.training import tail_mean, train_causal_lm
from repro.papers.minireranker._rerank import by_kind, device, load_corpus, ranking_metrics, reference_ndcg, vocab
from repro.papers.minireranker.method import DualEncoder


def padded(ids: list[list[int]], width: int) -> torch.Tensor:
    return torch.tensor([x[:width] + [0] * (width - len(x[:width])) for x in ids])


def run(ctx: StageContext) -> dict:
    p, t = ctx.params, ctx.params["embedder"]
    corpus = load_corpus(ctx.inputs["data"])
    v = vocab()
    torch.manual_seed(ctx.seed)
    model = DualEncoder({**t["model"], "vocab_size": len(v), "image_size": corpus.images.shape[1]}).to(device())
    train = corpus.split("train")
    width = t["model"]["max_words"]
    # one extra negative per query: a random non-relevant document (hub data marks no hard negatives)
    n_docs = len(corpus.images)

    def next_batch(step: int) -> dict:
        rng = np.random.default_rng([ctx.seed, 7, step])
        qs = rng.choice(train, size=min(t["batch_size"], len(train)), replace=False)
        pos = [sorted(corpus.queries[q]["relevant"])[rng.integers(len(corpus.queries[q]["relevant"]))] for q in qs]
        neg = []
        for q in qs:
            d = int(rng.integers(n_docs))
            while d in corpus.queries[q]["relevant"]:
                d = int(rng.integers(n_docs))
            neg.append(d)
        return {"images": images_to_tensor(corpus.images[pos]), "query_ids": padded([corpus.queries[q]["ids"] for q in qs], width),
                "negatives": images_to_tensor(corpus.images[neg])}

    losses = train_causal_lm(model, next_batch, steps=t["steps"], lr=t["lr"], warmup=t["warmup"],
                             weight_decay=t["weight_decay"], grad_clip=1.0, desc="embedder")
    model.eval()
    with torch.no_grad():
        embs, sal = [], []
        for s in range(0, n_docs, 256):
            e, a = model.encode_images(images_to_tensor(corpus.images[s:s + 256]).to(device()), saliency=True)
            embs.append(e.cpu())
            sal.append(a.cpu())
        docs, saliency = torch.cat(embs), torch.cat(sal)
        queries = model.encode_queries(padded([q["ids"] for q in corpus.queries], width).to(device())).cpu()
    k = p["rerank"]["candidates"]
    candidates = (queries @ docs.T).topk(k, dim=1).indices.numpy()
    np.save(ctx.out / "candidates.npy", candidates)
    np.save(ctx.out / "saliency.npy", saliency.numpy())
    checkpoint.save(ctx.out / "embedder", model.config, model.state_dict())
    atomic_write_json(ctx.out / "history.json", {"train_loss": losses})
    out = {"steps": len(losses), "train_loss_last": tail_mean(losses), "candidates": k}
    for split in ("val", "test"):
        rows = {}
        for q in corpus.split(split):
            cands, relevant = list(candidates[q]), corpus.queries[q]["relevant"]
            rows[str(q)] = {**ranking_metrics(list(range(k, 0, -1)), cands, relevant),
                            "recall": len(set(cands) & relevant) / len(relevant),
                            **{f"ndcg10_{o}": x for o, x in reference_ndcg(cands, relevant).items()},
                            "kind": corpus.queries[q]["kind"]}
        out[split] = {**{m: float(np.mean([r[m] for r in rows.values()]))
                         for m in ("ndcg10", "mrr", "hit1", "recall", "ndcg10_sorted", "ndcg10_shuffled")},
                      "by_kind": by_kind(rows), "per_query": rows}
    return out


if __name__ == "__main__":
    main(run)
