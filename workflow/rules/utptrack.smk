# UTPTrack: data -> train (un-pruned tracker, one seed) -> finetune/{variant}/seed{seed} (keep-rate
# warm-up; `baseline` fine-tuned as long, unpruned) -> evaluate/{variant}/seed{seed} (fine-tuned, and
# training-free on the same seed's baseline; whole test sequences with template updates); latency
# (random init, all variants interleaved with the un-pruned tracker) -> analysis -> report.
TRACKER_RUNS = product(variant=list(PARAMS["utptrack"][PROFILE]["variants"]), seed=PARAMS["utptrack"][PROFILE]["seeds"])
# a job reads its variant's entry and the one whose budget it matches: editing another re-runs nothing
OWN_VARIANT = {"variants": lambda variants, wc: {v: variants[v] for v in (wc.variant, variants[wc.variant].get("match_budget")) if v}}

data = stage("utptrack", "data", reads=["data"], mem_mb=3000)
train = stage("utptrack", "train", input={"data": data}, reads=["model", "crops", "loss", "train"],
              mem_mb=3000, gpu=True)  # small matrices: one thread each lets two jobs share the cores
finetune = stage("utptrack", "finetune", input={"data": data, "model": train}, each=TRACKER_RUNS,
                 reads=["crops", "variants", "finetune"], narrow=OWN_VARIANT, mem_mb=3000,
                 gpu=True)
stage("utptrack", "evaluate",
      input={"data": data, "model": finetune, "baseline": results("utptrack", "finetune", "baseline", "seed{seed}")},
      each=TRACKER_RUNS, reads=["crops", "variants", "evaluate"], narrow=OWN_VARIANT,
      gpu=True)
stage("utptrack", "latency", reads=["model", "crops", "variants", "latency"], timing=True, gpu=True)
stage("utptrack", "analysis",
      input={**outputs("utptrack", "evaluate"), **outputs("utptrack", "finetune"),
             **outputs("utptrack", "latency")},
      reads=["seeds", "variants", "analysis"], summary=True)
