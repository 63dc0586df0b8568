# PruningInferSim: data -> train -> prune/{family}/seed{seed} -> evaluate/{family}/seed{seed} (seeds vary
# dynamic depth's router training; the other families run on seed 0); latency (every family against
# dense in interleaved pairs, random init) -> analysis (frontier, bounds, taxonomy) -> report.
PRUNE_RUNS = [{"family": f, "seed": s} for f in PARAMS["pruninginfersim"][PROFILE]["families"]
              for s in (PARAMS["pruninginfersim"][PROFILE]["prune"]["router"]["seeds"] if f == "dynamic_depth" else [0])]

data = stage("pruninginfersim", "data", reads=["data"])
train = stage("pruninginfersim", "train", input={"data": data}, reads=["quality_model", "train", "evaluate"],
              threads=config["threads"], mem_mb=4000, gpu=True, snapshot=True)
prune = stage("pruninginfersim", "prune", input={"data": data, "model": train}, each=PRUNE_RUNS,
              reads=["prune"], mem_mb=4000, gpu=True)
stage("pruninginfersim", "evaluate", input={"data": data, "model": train, "pruned": prune}, each=PRUNE_RUNS,
      reads=["prune", "evaluate"], mem_mb=4000, gpu=True)
stage("pruninginfersim", "latency", reads=["families", "latency_model", "latency", "prune"], timing=True,
      mem_mb=8000, gpu=True)
stage("pruninginfersim", "analysis",
      input={**outputs("pruninginfersim", "evaluate"), **outputs("pruninginfersim", "latency")},
      reads=["families", "analysis"], summary=True, snapshot=True)
