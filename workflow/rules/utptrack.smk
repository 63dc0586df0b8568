# UTPTrack: data -> train (un-pruned tracker) -> finetune/{variant} (keep-rate warm-up; `baseline`
# fine-tuned as long, unpruned) -> evaluate/{variant} (fine-tuned and training-free, whole test
# sequences with template updates); latency (random init, all variants) -> analysis -> report.
VARIANTS = PARAMS["utptrack"][PROFILE]["variants"]


def own_variant(wc):
    """A variant's own entry (and the one whose budget it matches): editing another variant leaves
    this variant's jobs alone."""
    own = VARIANTS[wc.variant]
    return {wc.variant: own, **({own["match_budget"]: VARIANTS[own["match_budget"]]} if "match_budget" in own else {})}


EACH_VARIANT = [{"variant": v} for v in VARIANTS]
data = stage("utptrack", "data", reads=["data"], mem_mb=3000)
train = stage("utptrack", "train", input={"data": data}, reads=["model", "crops", "loss", "train"],
              mem_mb=3000, gpu=True, snapshot=True)  # small matrices: one thread each lets two jobs share the cores
finetune = stage("utptrack", "finetune", input={"data": data, "model": train}, each=EACH_VARIANT,
                 reads=["crops", "variants", "finetune"], narrow={"variants": own_variant}, mem_mb=3000,
                 gpu=True, snapshot=True)
stage("utptrack", "evaluate",
      input={"data": data, "model": finetune, "baseline": results("utptrack", "finetune", "baseline")},
      each=EACH_VARIANT, reads=["crops", "variants", "evaluate"], narrow={"variants": own_variant},
      gpu=True, snapshot=True)
stage("utptrack", "latency", reads=["model", "crops", "variants", "latency"], timing=True, gpu=True)
stage("utptrack", "analysis",
      input={**outputs("utptrack", "evaluate"), **outputs("utptrack", "finetune"),
             **outputs("utptrack", "latency")},
      reads=["variants", "analysis"], summary=True, snapshot=True)
