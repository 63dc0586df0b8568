"""Stage 7: the ladder's choices, on validation queries only, from the dense vision-first model of
one seed (`select.seed`):
- L_e: the dense model (every layer) and, for each candidate exit layer, that model truncated
  there, each fine-tuned for the ladder's adaptation steps (so the truncated models gain nothing
  from extra steps the reference lacks); L_e is the smallest layer whose validation NDCG@10 keeps
  `keep_share` of the adapted dense model's (all layers if none does);
- the band [b, b + w): the width-w window inside [0, L_e) where query tokens put the largest
  attention mass on document tokens in the dense model (validation pairs).
Validation NDCG@10 is over the query kinds the claims decide (`rerank.decided_kinds`).
The pruning share r is chosen by the analysis from the ladder's validation runs."""
import copy

import numpy as np
import torch

from repro.core.io import atomic_write_json
from repro.core.stage import StageContext, main
from repro.data.scenes import images_to_tensor
from repro.models.mllm import TinyMLLM
from repro.papers.minireranker._rerank import device, finetune, kinds_mean, load_corpus, rerank, tokens, vocab
from repro.papers.minireranker.method import Arm, choose_band, query_to_document_mass


def run(ctx: StageContext) -> dict:
    p, s = ctx.params, ctx.params["select"]
    corpus = load_corpus(ctx.inputs["data"], ctx.inputs["embed"])
    tok = tokens(vocab(), p["formats"])
    dense = TinyMLLM.load(ctx.inputs["dense"] / "model", device())
    n_layers = len(dense.decoder.blocks)
    curve = {}
    for layer in [*s["exit_layers"], n_layers]:  # exit after every layer: the adapted dense reference
        torch.manual_seed(s["seed"])
        model = copy.deepcopy(dense)
        arm = Arm(exit=None if layer == n_layers else layer, positions=p["positions"])
        finetune(model, arm, tok, corpus, p["adapt"], stream=(s["seed"], 13, layer), desc=f"exit after {layer}")
        curve[layer] = kinds_mean(rerank(model, arm, tok, corpus, "val", cached=True), p["rerank"]["decided_kinds"])
    dense_val = curve[n_layers]
    passing = [layer for layer in s["exit_layers"] if curve[layer] >= s["keep_share"] * dense_val]
    exit_layer = min(passing) if passing else n_layers
    # query -> document attention mass of the dense model on validation pairs (each query with its
    # first `band_pairs` candidates)
    rng = np.random.default_rng([s["seed"], 19])
    val = corpus.split("val")
    pairs = [(q, int(d)) for q in val for d in corpus.candidates[q][: s["band_pairs"]]]
    pairs = [pairs[i] for i in rng.permutation(len(pairs))[:256]]
    images = images_to_tensor(corpus.images[[d for _, d in pairs]]).to(device())
    mass = query_to_document_mass(dense, tok, images, [corpus.queries[q]["ids"] for q, _ in pairs])
    width = s["band_width"]
    band = choose_band(mass, width, exit_layer)
    selection = {"exit": exit_layer, "band": [band, width], "n_layers": n_layers}
    atomic_write_json(ctx.out / "selection.json", selection)
    return {**selection, "dense_val_ndcg10": dense_val, "exit_curve": {str(k): v for k, v in curve.items()},
            "keep_share": s["keep_share"], "query_to_document_mass": mass.tolist()}


if __name__ == "__main__":
    main(run)
