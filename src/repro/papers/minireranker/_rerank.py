"""What the reranker's stages share: the corpus and first-stage candidates, the token ids of the
formats, (query, document) training batches, fine-tuning, and reranking a split's queries with
NDCG@10, MRR and Hit@1 per query."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from repro.data.scenes import Vocab, images_to_tensor
from repro.models.training import train_causal_lm
from repro.papers.minireranker.method import (Arm, Scorer, Tokens, document_cache, relevance, score_cached,
                                              score_pairs, sink_cache)

# words of the query templates and prompts beyond the scene vocabulary
EXTRA_WORDS = ("of", "on", "top", "bottom", "relevant", "picture", ":", "document", "query")


def vocab() -> Vocab:
    return Vocab(extra=EXTRA_WORDS)


def tokens(v: Vocab, formats: dict) -> Tokens:
    """Ids of the format strings written out in params (`formats`: caption, prompt)."""
    return Tokens(bos=v.bos_id, caption=tuple(v.encode(formats["caption"])), prompt=tuple(v.encode(formats["prompt"])),
                  yes=v.index["yes"], no=v.index["no"])


def device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


@dataclass
class Corpus:
    images: np.ndarray  # uint8 [D, H, W, 3]
    queries: list[dict]  # text, kind, split, relevant (set of doc indices), ids (word ids)
    candidates: np.ndarray | None = None  # [Q, K] first-stage top-K doc indices, best first
    saliency: torch.Tensor | None = None  # [D, N] the embedder's CLS->patch attention

    def split(self, name: str) -> list[int]:
        return [i for i, q in enumerate(self.queries) if q["split"] == name]


def load_corpus(data, embed=None) -> Corpus:
    import datasets

    docs = datasets.load_from_disk(str(data / "documents")).with_format("numpy")
    qs = datasets.load_from_disk(str(data / "queries"))
    v = vocab()
    queries = [{"text": t, "kind": k, "split": s, "relevant": set(int(x) for x in r), "ids": v.encode(t)}
               for t, k, s, r in zip(qs["text"], qs["kind"], qs["split"], qs["relevant"])]
    corpus = Corpus(docs["image"][:], queries)
    if embed is not None:
        corpus.candidates = np.load(embed / "candidates.npy")
        corpus.saliency = torch.from_numpy(np.load(embed / "saliency.npy"))
    return corpus


def group_batch(images, queries: list[list[int]], labels: list[int], group: list[int], saliency=None) -> dict:
    """A training batch of (query, document) pairs in groups (one relevant member per group)."""
    width = max(map(len, queries))
    batch = {"images": images_to_tensor(images), "query_ids": torch.tensor([q + [0] * (width - len(q)) for q in queries]),
             "query_len": torch.tensor([len(q) for q in queries]), "labels": torch.tensor(labels),
             "group": torch.tensor(group)}
    return batch if saliency is None else {**batch, "saliency": saliency}


def group_batches(corpus: Corpus, groups: int, size: int, stream: Sequence[int]):
    """next_batch(step) -> `groups` groups of `size` pairs from the train queries, a pure function of
    (stream, step): each group is a query with one of its relevant documents and `size` - 1
    non-relevant documents among its first-stage candidates (near misses and hard negatives), the
    list the listwise loss ranks."""
    train = corpus.split("train")
    everything = range(len(corpus.images))  # a query whose candidates are all relevant draws from the corpus
    negatives = {q: [int(d) for d in corpus.candidates[q] if d not in corpus.queries[q]["relevant"]]
                 or [d for d in everything if d not in corpus.queries[q]["relevant"]] for q in train}

    def next_batch(step: int) -> dict:
        rng = np.random.default_rng([*stream, step])
        docs, qids, labels, group = [], [], [], []
        for g in range(groups):
            q = train[rng.integers(len(train))]
            relevant = sorted(corpus.queries[q]["relevant"])
            pool = negatives[q]
            members = [relevant[rng.integers(len(relevant))],
                       *(pool[i] for i in rng.choice(len(pool), size=min(size - 1, len(pool)), replace=False))]
            docs += members
            qids += [corpus.queries[q]["ids"]] * len(members)
            labels += [1] + [0] * (len(members) - 1)
            group += [g] * len(members)
        return group_batch(corpus.images[docs], qids, labels, group, corpus.saliency[docs])

    return next_batch


def freeze(model, t: dict) -> None:
    """The vision tower and its grid positions stay as the tower stage trained them (LLaVA keeps its
    CLIP encoder frozen); with `t.keep_alignment` the projector and the LLM's word embeddings stay as
    the alignment stage left them too, so the near-lexical match between a query word and its
    object's visual token survives training. The rest of the LLM trains."""
    fixed = [*model.vision.parameters(), model.pos]
    if t["keep_alignment"]:
        fixed += [*model.projector.parameters(), *model.decoder.embed.parameters()]
    for x in fixed:
        x.requires_grad_(False)


def finetune(model, arm: Arm, tok: Tokens, corpus: Corpus, t: dict, stream: Sequence[int], desc: str) -> list[float]:
    """Train the reranker under `arm` on the rank loss over groups of each train query's candidates
    (AdamW, warm-up + cosine)."""
    freeze(model, t)
    model.to(device()).train()
    return train_causal_lm(Scorer(model, arm, tok, t["pointwise"]), group_batches(corpus, t["groups"], t["group_size"], stream),
                           steps=t["steps"], lr=t["lr"], warmup=t["warmup"], weight_decay=t["weight_decay"],
                           grad_clip=t["grad_clip"], desc=desc)


# ---------------------------------------------------------------- ranking metrics


def ndcg_at(ranked_relevant: Sequence[int], n_relevant: int, k: int = 10) -> float:
    """Binary-relevance NDCG@k of one ranking; the ideal ranking puts all n_relevant judged
    documents first (those the first stage missed count against it)."""
    dcg = sum(r / math.log2(i + 2) for i, r in enumerate(ranked_relevant[:k]))
    ideal = sum(1 / math.log2(i + 2) for i in range(min(k, n_relevant)))
    return dcg / ideal if ideal else 0.0


def reciprocal_rank(ranked_relevant: Sequence[int]) -> float:
    return next((1 / (i + 1) for i, r in enumerate(ranked_relevant) if r), 0.0)


def ranking_metrics(scores: Sequence[float], candidates: Sequence[int], relevant: set, k: int = 10) -> dict:
    """NDCG@k, MRR and Hit@1 of the candidates sorted by score (ties keep the first-stage order)."""
    order = sorted(range(len(candidates)), key=lambda i: -scores[i])
    rel = [int(candidates[i] in relevant) for i in order]
    return {"ndcg10": ndcg_at(rel, len(relevant), k), "mrr": reciprocal_rank(rel), "hit1": float(rel[0])}


def reference_ndcg(candidates: Sequence[int], relevant: set, k: int = 10) -> dict:
    """What reranking these candidates can score: `sorted` (relevant first, the ceiling of any
    reranker) and `shuffled` (the expectation over uniformly random orders: each of the top k
    slots holds a relevant candidate with probability m / K)."""
    rel = [int(d in relevant) for d in candidates]
    share = sum(rel) / len(rel)
    return {"sorted": ndcg_at(sorted(rel, reverse=True), len(relevant), k),
            "shuffled": ndcg_at([share] * min(k, len(rel)), len(relevant), k)}


# ---------------------------------------------------------------- reranking a split


@torch.no_grad()
def rerank(model, arm: Arm, tok: Tokens, corpus: Corpus, split: str, batch: int = 100, cached: bool = False) -> dict:
    """Per query of the split: the reranker's NDCG@10, MRR and Hit@1 over its first-stage top-K.
    `cached`: every candidate document's KV is computed once (`document_cache`) and each query runs
    against the caches (`score_cached`); otherwise one whole-sequence forward per pair."""
    model.to(device()).eval()
    qs = corpus.split(split)
    dev = device()
    scores = {}
    if cached:
        docs = sorted({int(d) for q in qs for d in corpus.candidates[q]})
        caches = {}
        for s in range(0, len(docs), batch):
            ids = docs[s:s + batch]
            c = document_cache(model, arm, tok, images_to_tensor(corpus.images[ids]).to(dev), corpus.saliency[ids])
            for j, d in enumerate(ids):
                caches[d] = [(k[j:j + 1], v[j:j + 1]) for k, v in c]
        sink = sink_cache(model, tok)
        n_visual, n_kept = model.n_visual, caches[docs[0]][0][0].shape[2] - 1
        for q in qs:
            cand = [int(d) for d in corpus.candidates[q]]
            stacked = [tuple(torch.cat([caches[d][i][x] for d in cand]) for x in (0, 1))
                       for i in range(len(caches[cand[0]]))]
            yn = score_cached(model, arm, tok, stacked, sink, corpus.queries[q]["ids"], n_visual, n_kept)
            scores[q] = relevance(yn).tolist()
    else:
        for q in qs:
            cand = [int(d) for d in corpus.candidates[q]]
            out = []
            for s in range(0, len(cand), batch):
                ids = cand[s:s + batch]
                yn = score_pairs(model, arm, tok, images_to_tensor(corpus.images[ids]).to(dev),
                                 [corpus.queries[q]["ids"]] * len(ids), corpus.saliency[ids])
                out += relevance(yn).tolist()
            scores[q] = out
    per_query = {str(q): {**ranking_metrics(scores[q], list(corpus.candidates[q]), corpus.queries[q]["relevant"]),
                          "kind": corpus.queries[q]["kind"]} for q in qs}
    return {**means(per_query.values()), "by_kind": by_kind(per_query), "per_query": per_query}


def means(rows) -> dict:
    rows = list(rows)
    return {m: float(np.mean([r[m] for r in rows])) for m in ("ndcg10", "mrr", "hit1")}


def kinds_mean(result: dict, kinds, metric: str = "ndcg10") -> float:
    """Mean `metric` of a `rerank` result over the queries of `kinds` (those the claims decide)."""
    return float(np.mean([r[metric] for r in result["per_query"].values() if r["kind"] in kinds]))


def by_kind(per_query: dict) -> dict:
    """Mean NDCG@10, MRR and Hit@1 of each query kind."""
    kinds = sorted({r["kind"] for r in per_query.values()})
    return {k: {**means(r for r in per_query.values() if r["kind"] == k),
                "queries": sum(r["kind"] == k for r in per_query.values())} for k in kinds}
