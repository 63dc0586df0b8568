# PruningInferSim: data -> train -> prune/{family}/seed{seed} -> evaluate/{family}/seed{seed} (seeds vary
# dynamic depth's router training; the other families run on seed 0); latency (every family against
# dense in interleaved pairs, random init; dynamic depth at its evaluated execution rates) -> analysis
# (frontier, bounds, taxonomy) -> report.
PRUNE_RUNS = [{"family": f, "seed": s} for f in PARAMS["pruninginfersim"][PROFILE]["families"]
              for s in (PARAMS["pruninginfersim"][PROFILE]["prune"]["router"]["seeds"] if f == "dynamic_depth" else [0])]

data = stage("pruninginfersim", "data", reads=["data"])
train = stage("pruninginfersim", "train", input={"data": data}, reads=["quality_model", "train", "evaluate"],
              threads=config["threads"], mem_mb=4000, gpu=True)
prune = stage("pruninginfersim", "prune", input={"data": data, "model": train}, each=PRUNE_RUNS,
              reads=["prune"], mem_mb=4000, gpu=True)
stage("pruninginfersim", "evaluate", input={"data": data, "model": train, "pruned": prune}, each=PRUNE_RUNS,
      reads=["prune", "evaluate"], mem_mb=4000, gpu=True)
# dynamic depth is timed at the execution rates its trained routers measured on held-out text
stage("pruninginfersim", "latency", input=outputs("pruninginfersim", "evaluate", family="dynamic_depth"),
      reads=["families", "latency_model", "latency", "prune"], timing=True, mem_mb=8000, gpu=True)
stage("pruninginfersim", "analysis",
      input={"data": data, "train": train, **outputs("pruninginfersim", "evaluate"),
             **outputs("pruninginfersim", "latency")},
      reads=["families", "analysis"], summary=True)
