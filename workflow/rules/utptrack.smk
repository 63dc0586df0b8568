# UTPTrack: data -> train (un-pruned tracker, one seed) -> finetune/{variant}/seed{seed} (keep-rate
# warm-up; `baseline` fine-tuned as long, unpruned, also on the A/A seeds) -> evaluate/{variant}/seed{seed}
# (fine-tuned, and training-free on the same seed's baseline for the variants the params list; whole test
# sequences with template updates); latency
# (random init, all variants interleaved with the un-pruned tracker) -> analysis -> report.
UTP = PARAMS["utptrack"][PROFILE]
# every variant on the seeds, and the un-pruned baseline again on the A/A seeds (seed-only A/A control)
TRACKER_RUNS = (product(variant=list(UTP["variants"]), seed=UTP["seeds"])
                + product(variant=["baseline"], seed=UTP["aa_seeds"]))
# a job reads its variant's entry and the one whose budget it matches: editing another re-runs nothing
OWN_VARIANT = {"variants": lambda variants, wc: {v: variants[v] for v in (wc.variant, variants[wc.variant].get("match_budget")) if v}}

data = stage("utptrack", "data", reads=["data"], mem_mb=3000)
# pre-training runs alone (everything else waits for it), so it takes both cores; the fine-tuning and
# evaluation jobs have small matrices: one thread each lets two jobs share the cores
train = stage("utptrack", "train", input={"data": data}, reads=["model", "crops", "loss", "train"],
              threads=2, mem_mb=3000, gpu=True)
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
      reads=["seeds", "aa_seeds", "variants", "analysis"], summary=True)
