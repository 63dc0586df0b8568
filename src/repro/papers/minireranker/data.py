"""Stage 1: scene documents, templated queries with exact relevance labels, and hard negatives.

Documents are scenes of `repro.data.scenes` (1-3 coloured shapes on a textured grey background).
A query is a predicate over a scene, written out from a template (`_queries`): attribute ("a large
red circle"), position ("a red circle on the left"), colour relation ("a red object left of a blue
object"), relation ("a red circle left of a blue square") and count ("2 red objects"). Relevance is
the predicate's truth on the document's scene (`holds`), for every (query, document) pair of the
corpus. Queries are drawn from objects of random corpus documents (so each has a positive) and kept
when their number of positives lies in `positives` (a query that half the corpus satisfies ranks
nothing), up to `per_kind[kind]` distinct texts per kind; texts are unique across splits, and each
kind is split into test / val / train in the shares `splits` gives. Hard negatives: for
`hard_negatives` positives of each query, a copy with one attribute (colour, shape or size) of one
object changed so that the predicate fails, drawn on the same background; they join the corpus
before labelling.

`source.kind: hub` reads prepared documents (`image`) and queries (`text`, `kind`, `split`,
`relevant` doc indices) with `datasets.load_dataset` instead.
"""
from __future__ import annotations

import json

import numpy as np

from repro.core.stage import StageContext, main
from repro.data.scenes import render, sample_scene
from repro.papers.minireranker._queries import KINDS, hard_negative, holds, sample_predicate, text


def build(source: dict, seed: int) -> tuple[list[dict], list[dict]]:
    """(documents {scene, render_seed, source}, queries {predicate, text, kind, split, relevant})."""
    rng = np.random.default_rng([seed, 1])
    docs = [{"scene": sample_scene(rng, tuple(source["objects"])), "render_seed": i, "source": -1}
            for i in range(source["documents"])]
    lo, hi = source["positives"]
    cap = source["per_kind"]
    kinds = [k for k in KINDS if k in cap]
    chosen, seen = {k: [] for k in kinds}, set()
    for attempt in range(source["max_tries"]):
        kind = kinds[attempt % len(kinds)]
        if len(chosen[kind]) >= cap[kind]:
            if all(len(chosen[k]) >= cap[k] for k in kinds):
                break
            continue
        p = sample_predicate(rng, docs[rng.integers(len(docs))]["scene"], kind)
        if p is None or text(p) in seen:
            continue
        seen.add(text(p))
        pos = [i for i, d in enumerate(docs) if holds(d["scene"], p)]
        if lo <= len(pos) <= hi:
            chosen[kind].append((p, pos))
    # each kind is split in the given shares, so every split holds every kind that has texts
    shares = source["splits"]
    order, names = [], []
    for kind in kinds:
        n = len(chosen[kind])
        counts = {s: int(round(n * f)) for s, f in shares.items() if s != "train"}
        counts["train"] = n - sum(counts.values())
        order += chosen[kind]
        names += [s for s in ("test", "val", "train") for _ in range(counts[s])]
    queries = []
    for (p, pos), split in zip(order, names):
        for i in rng.permutation(pos)[:source["hard_negatives"]]:
            edited = hard_negative(rng, docs[i]["scene"], p)
            if edited is not None:
                docs.append({"scene": edited, "render_seed": docs[i]["render_seed"], "source": int(i)})
        queries.append({"predicate": p, "text": text(p), "kind": p["kind"], "split": split})
    for q in queries:  # exact labels over the final corpus, hard negatives included
        q["relevant"] = [i for i, d in enumerate(docs) if holds(d["scene"], q["predicate"])]
    return docs, queries


def to_datasets(docs: list[dict], queries: list[dict], image_size: int, seed: int):
    import datasets

    images = np.stack([render(d["scene"], image_size, np.random.default_rng([seed, 2, d["render_seed"]]))
                       for d in docs])
    s = image_size
    doc_set = datasets.Dataset.from_dict(
        {"image": images, "scene": [json.dumps(d["scene"]) for d in docs], "source": [d["source"] for d in docs]},
        features=datasets.Features({"image": datasets.Array3D((s, s, 3), "uint8"), "scene": datasets.Value("string"),
                                    "source": datasets.Value("int32")}))
    query_set = datasets.Dataset.from_dict(
        {"text": [q["text"] for q in queries], "kind": [q["kind"] for q in queries],
         "split": [q["split"] for q in queries], "relevant": [q["relevant"] for q in queries],
         "predicate": [json.dumps(q["predicate"]) for q in queries]})
    return doc_set, query_set


def load_hub(source: dict):
    import datasets

    docs = datasets.load_dataset(**source["documents"])
    queries = datasets.load_dataset(**source["queries_load"])
    images = np.stack([np.asarray(im, dtype=np.uint8) for im in docs["image"]])
    s = images.shape[1]
    doc_set = datasets.Dataset.from_dict({"image": images, "source": [-1] * len(images)},
                                         features=datasets.Features({"image": datasets.Array3D((s, s, 3), "uint8"),
                                                                     "source": datasets.Value("int32")}))
    return doc_set, queries.select_columns(["text", "kind", "split", "relevant"])


def run(ctx: StageContext) -> dict:
    source = ctx.params["data"]["source"]
    if source["kind"] == "synthetic":
        doc_set, query_set = to_datasets(*build(source, ctx.seed), source["image_size"], ctx.seed)
    else:
        doc_set, query_set = load_hub(source)
    doc_set.save_to_disk(str(ctx.out / "documents"))
    query_set.save_to_disk(str(ctx.out / "queries"))
    out = {"documents": len(doc_set), "hard_negatives": int(sum(s >= 0 for s in doc_set["source"]))}
    for split in sorted(set(query_set["split"])):
        rows = query_set.filter(lambda r: r["split"] == split)
        npos = [len(r) for r in rows["relevant"]]
        out[split] = {"queries": len(rows), "positives_mean": float(np.mean(npos)), "positives_min": int(min(npos)),
                      "positives_max": int(max(npos)),
                      "kinds": {k: int(sum(x == k for x in rows["kind"])) for k in sorted(set(rows["kind"]))}}
    return out


if __name__ == "__main__":
    main(run)
