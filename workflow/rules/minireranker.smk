# miniReranker: data -> embed (dual encoder, first-stage top-K, visual-token scores; one seed) ->
# tower (the reranker's vision tower on per-token object labels; one seed) -> align (projector to
# the word embeddings of each token's object phrase) -> pretrain (minimal-pair groups, listwise +
# pointwise; zero-shot validation NDCG) -> finetune/{format}/seed{seed} (fine-tune + rerank test) ->
# select (L_e and the band on validation, from the dense vision-first model of one seed) ->
# ladder/{rung}/seed{seed} (adapt + cached reranking; the `dense` rung gets the same steps) ; cost
# (analytic FLOPs, interleaved timing at paper-like token counts) -> analysis -> report.
MR = PARAMS["minireranker"][PROFILE]
MR_FORMATS = ["query_first", "document_first", "vision_first"]

data = stage("minireranker", "data", reads=["data"], mem_mb=3000)
# embed, tower, align and pretrain run on the chain's critical path: two threads each
embed = stage("minireranker", "embed", input={"data": data}, reads=["embedder", "rerank"], threads=2, mem_mb=3000,
              gpu=True)
tower = stage("minireranker", "tower", reads=["model", "tower"], threads=2, mem_mb=3000, gpu=True)
align = stage("minireranker", "align", input={"tower": tower}, reads=["model", "align"], threads=2, mem_mb=3000,
              gpu=True)
pretrain = stage("minireranker", "pretrain", input={"data": data, "embed": embed, "align": align},
                 reads=["formats", "model", "pretrain"], threads=2, mem_mb=3000, gpu=True)
# the vision-first runs on `aa_seeds` are the seed-only A/A control
finetune = stage("minireranker", "finetune", input={"data": data, "embed": embed, "model": pretrain},
                 each=product(format=MR_FORMATS, seed=MR["seeds"]) + product(format=["vision_first"], seed=MR["aa_seeds"]),
                 reads=["formats", "finetune"], mem_mb=3000, gpu=True)
dense = results("minireranker", "finetune", "vision_first", f"seed{MR['select']['seed']}")
select = stage("minireranker", "select", input={"data": data, "embed": embed, "dense": dense},
               reads=["formats", "positions", "rerank", "adapt", "select"], mem_mb=3000, gpu=True)
stage("minireranker", "ladder",
      input={"data": data, "embed": embed, "select": select,
             "dense": results("minireranker", "finetune", "vision_first", "seed{seed}")},
      each=product(rung=list(MR["ladder"]), seed=MR["seeds"]), reads=["formats", "positions", "adapt", "ladder"],
      narrow={"ladder": lambda ladder, wc: ladder[wc.rung]}, mem_mb=3000, gpu=True)
stage("minireranker", "cost", input={"data": data, "select": select, "model": pretrain},
      reads=["formats", "positions", "ladder", "cost"], timing=True, mem_mb=6000, gpu=True)
stage("minireranker", "analysis",
      input={**outputs("minireranker", "finetune"), **outputs("minireranker", "ladder"),
             "select": select, "embed": embed, "pretrain": pretrain, "cost": results("minireranker", "cost")},
      reads=["seeds", "aa_seeds", "data", "formats", "positions", "embedder", "rerank", "model", "tower", "align", "pretrain",
             "finetune", "adapt", "select", "ladder"], summary=True)
