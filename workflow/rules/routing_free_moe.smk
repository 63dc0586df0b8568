# Routing-Free MoE: data -> train/{arm}/seed{seed} (dense, top-k, routing-free, and routing-free at the
# other mus of the sweep) -> threshold (inference theta sweep) and evaluate -> analysis -> report.
from repro.papers.routing_free_moe._arms import run_key, runs  # noqa: E402  (light: no torch)

MOE_RUNS = [{"arm": a, "seed": s} for a, s in runs(PARAMS["routing_free_moe"][PROFILE])]
RUN_KEY = lambda w: run_key(w["arm"], w["seed"])  # noqa: E731  (the stages' names of the runs)

data = stage("routing_free_moe", "data", reads=["data"])
stage("routing_free_moe", "train", input={"data": data}, each=MOE_RUNS, reads=["model", "arms", "train"],
      mem_mb=3000, gpu=True)  # small matrices: two 1-thread runs side by side beat one 2-thread run
threshold = stage("routing_free_moe", "threshold",
                  input={"data": data, **outputs("routing_free_moe", "train", RUN_KEY, arm="rf")},
                  reads=["threshold", "evaluate"], gpu=True)
evaluate = stage("routing_free_moe", "evaluate",
                 input={"data": data, **outputs("routing_free_moe", "train", RUN_KEY)}, reads=["evaluate"],
                 gpu=True)
stage("routing_free_moe", "analysis", input={"data": data, "evaluate": evaluate, "threshold": threshold},
      reads=["arms", "mu_sweep", "threshold"], summary=True)
