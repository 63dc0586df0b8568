# UTPTrack: data -> train (un-pruned tracker, one seed) -> finetune/{variant}/seed{seed} (keep-rate
# warm-up; `baseline` fine-tuned as long, unpruned) -> evaluate/{variant}/seed{seed} (fine-tuned, and
# training-free on the same seed's baseline; whole test sequences with template updates); latency
# (random init, all variants interleaved with the un-pruned tracker) -> analysis -> report.
VARIANTS = PARAMS["utptrack"][PROFILE]["variants"]
RUNS = product(variant=list(VARIANTS), seed=PARAMS["utptrack"][PROFILE]["seeds"])


def own_variant(wc):
    """A variant's own entry (and the one whose budget it matches): editing another variant leaves
    this variant's jobs alone."""
    own = VARIANTS[wc.variant]
    return {wc.variant: own, **({own["match_budget"]: VARIANTS[own["match_budget"]]} if "match_budget" in own else {})}


data = stage("utptrack", "data", reads=["data"], mem_mb=3000)
train = stage("utptrack", "train", input={"data": data}, reads=["model", "crops", "loss", "train"],
              mem_mb=3000, gpu=True, snapshot=True)  # small matrices: one thread each lets two jobs share the cores
finetune = stage("utptrack", "finetune", input={"data": data, "model": train}, each=RUNS,
                 reads=["crops", "variants", "finetune"], narrow={"variants": own_variant}, mem_mb=3000,
                 gpu=True, snapshot=True)
stage("utptrack", "evaluate",
      input={"data": data, "model": finetune, "baseline": results("utptrack", "finetune", "baseline", "seed{seed}")},
      each=RUNS, reads=["crops", "variants", "evaluate"], narrow={"variants": own_variant},
      gpu=True, snapshot=True)
stage("utptrack", "latency", reads=["model", "crops", "variants", "latency"], timing=True, gpu=True)
stage("utptrack", "analysis",
      input={**outputs("utptrack", "evaluate"), **outputs("utptrack", "finetune"),
             **outputs("utptrack", "latency")},
      reads=["seeds", "variants", "analysis"], summary=True, snapshot=True)
