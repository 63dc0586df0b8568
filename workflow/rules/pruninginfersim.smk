# PruningInferSim: data -> train -> prune/{family} -> evaluate/{family}; latency (all families, random
# init) -> analysis (frontier, bounds, taxonomy) -> report.
FAMILIES = [{"family": f} for f in PARAMS["pruninginfersim"][PROFILE]["families"]]

data = stage("pruninginfersim", "data", reads=["data"])
train = stage("pruninginfersim", "train", input={"data": data}, reads=["quality_model", "train", "evaluate"],
              threads=config["threads"], mem_mb=4000, gpu=True, snapshot=True)
prune = stage("pruninginfersim", "prune", input={"data": data, "model": train}, each=FAMILIES,
              reads=["prune"], mem_mb=4000, gpu=True)
stage("pruninginfersim", "evaluate", input={"data": data, "model": train, "pruned": prune}, each=FAMILIES,
      reads=["prune", "evaluate"], mem_mb=4000, gpu=True)
stage("pruninginfersim", "latency", reads=["families", "latency_model", "latency", "prune"], timing=True,
      mem_mb=8000, gpu=True)
stage("pruninginfersim", "analysis",
      input={**outputs("pruninginfersim", "evaluate"), **outputs("pruninginfersim", "latency")},
      reads=["families", "analysis"], summary=True, snapshot=True)
