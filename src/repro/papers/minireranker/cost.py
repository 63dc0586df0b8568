"""Stage 9: cost per query. Analytic FLOPs (method.pair_flops) of dense scoring (one whole forward
per pair) and of every ladder rung under high reuse (document caches amortised away) and low reuse
(each document's cache used by one query), at the trained model's sizes and at paper-like sizes
(the Qwen3-VL-like LLM of params, ~1,024 image tokens, ~20 query tokens; the exit layer and band
start at the same share of the depth). Measured time at the paper-like token and layer counts with
random weights at a narrow width: dense scoring of `candidates` pairs against each rung's cached
scoring of the same pairs (high reuse: the caches are built before timing), in interleaved pairs
with an A/A control (dense against an identical copy). Cost is linear in the number of candidates.
The trained model's sizes come from its checkpoint (the pre-trained one: fine-tuning keeps them)."""
import copy
import math

import numpy as np
import torch

from repro.core.io import read_json
from repro.core.stage import StageContext, main
from repro.core.timing import AA, interleaved
from repro.models.mllm import build_mllm
from repro.papers.minireranker._rerank import device, load_corpus, tokens, vocab
from repro.papers.minireranker.method import (Arm, document_cache, n_keep, pair_flops, score_cached, score_pairs,
                                              sink_cache)


def llm_dims(structure: dict) -> dict:
    """pair_flops' sizes of a decoder structure (repro.models.decoder), as the checkpoint stores it."""
    attn, mlp = structure["blocks"][0]["attn"], structure["blocks"][0]["mlp"]
    return {"hidden_size": structure["config"]["hidden_size"], "intermediate_size": mlp["gate"]["n"],
            "num_attention_heads": attn["heads"], "num_key_value_heads": attn["kv_heads"], "head_dim": attn["head_dim"],
            "num_hidden_layers": len(structure["blocks"])}


def shares(dims: dict, arms: dict, n_visual: int, n_query: float, n_caption: int) -> dict:
    dense = pair_flops(dims, Arm(), n_visual, n_query, reuse=None)["total"]
    out = {"dense_flops": dense, "rungs": {}}
    for name, arm in arms.items():
        high = pair_flops(dims, arm, n_visual, n_query, n_caption, reuse=math.inf)
        low = pair_flops(dims, arm, n_visual, n_query, n_caption, reuse=1)
        out["rungs"][name] = {"high_reuse": high["total"] / dense, "low_reuse": low["total"] / dense,
                              "document_flops": high["document"], "query_flops": high["query"]}
    return out


def run(ctx: StageContext) -> dict:
    p, c = ctx.params, ctx.params["cost"]
    selection = read_json(ctx.inputs["select"] / "selection.json")
    corpus = load_corpus(ctx.inputs["data"])
    v = vocab()
    tok = tokens(v, p["formats"])
    n_layers = selection["n_layers"]
    rungs = {n: Arm.rung(r, selection, p["positions"]) for n, r in p["ladder"].items()}  # `dense`: cached, every layer
    trained = read_json(ctx.inputs["model"] / "model" / "config.json")  # the reranker's sizes, hub or not
    tiny_visual = (trained["image_size"] // trained["vision"]["patch_size"]) ** 2
    tiny_query = float(np.mean([len(q["ids"]) for q in corpus.queries if q["split"] == "test"])) + len(tok.prompt)
    paper, t = c["paper_like"], c["timing"]
    deep = {n: a.scaled(n_layers, paper["dims"]["num_hidden_layers"]) for n, a in rungs.items()}
    out = {"selection": selection,
           "paper_like_arms": {n: {"exit": a.exit, "band": a.band, "keep": a.keep} for n, a in deep.items()},
           "tiny": {"image_tokens": tiny_visual, "query_tokens": tiny_query,
                    **shares(llm_dims(trained["decoder"]), rungs, tiny_visual, tiny_query, len(tok.caption))},
           "paper_like": {"image_tokens": paper["image_tokens"], "query_tokens": paper["query_tokens"] + len(tok.prompt),
                          "layers": paper["dims"]["num_hidden_layers"],
                          **shares(paper["dims"], deep, paper["image_tokens"], paper["query_tokens"] + len(tok.prompt),
                                   len(tok.caption))}}
    # measured: the same token and layer counts, random weights, narrow width
    dev = device()
    grid = int(round(math.sqrt(t["image_tokens"])))
    llm = {"arch": "llama", "max_position_embeddings": 4 * t["image_tokens"],
           **{k: t[k] for k in ("hidden_size", "intermediate_size", "num_attention_heads", "num_key_value_heads",
                                "num_hidden_layers")}}
    torch.manual_seed(ctx.seed)
    model = build_mllm({"vision": {"hidden_size": 32, "num_hidden_layers": 0, "num_attention_heads": 2,
                                   "intermediate_size": 32, "patch_size": 2},
                        "image_size": 2 * grid, "projector": {"hidden": 64}, "llm": llm}, len(v)).to(dev).eval()
    gen = torch.Generator().manual_seed(ctx.seed)
    images = torch.rand(t["candidates"], 3, 2 * grid, 2 * grid, generator=gen).to(dev) * 2 - 1
    saliency = torch.rand(t["candidates"], grid * grid, generator=gen)
    query = torch.randint(len(v.words) // 4, len(v), (t["query_tokens"],), generator=gen).tolist()
    timed = {n: a.scaled(n_layers, t["num_hidden_layers"]) for n, a in rungs.items()}

    def dense_of(m):
        return lambda: score_pairs(m, Arm(), tok, images, [query] * t["candidates"])

    def cached_of(arm):
        cache = document_cache(model, arm, tok, images, saliency)  # built once: high reuse
        sink = sink_cache(model, tok)
        kept = n_keep(grid * grid, arm.keep)
        return lambda: score_cached(model, arm, tok, cache, sink, query, grid * grid, kept)

    with torch.inference_mode():
        variants = {AA: dense_of(copy.deepcopy(model)), **{n: cached_of(a) for n, a in timed.items()}}
        out["pairs"] = interleaved(dense_of(model), variants, pairs=t["pairs"], warmup=t["warmup"],
                                   flush_mb=t["flush_mb"], device=dev)
    out["timing"] = {"image_tokens": grid * grid, "query_tokens": t["query_tokens"] + len(tok.prompt),
                     "layers": t["num_hidden_layers"], "width": t["hidden_size"], "candidates": t["candidates"],
                     "arms": {n: {"exit": a.exit, "band": a.band, "keep": a.keep} for n, a in timed.items()},
                     "threads": torch.get_num_threads(), "device": dev}
    return out


if __name__ == "__main__":
    main(run)
