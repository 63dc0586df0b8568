# ProactiveLLM: data/{task} -> pretrain/{task} (the offline backbone, one seed, shared by every arm)
# -> train/{task}/{arm}/seed{seed} (V0 full, V1 wait-k, V2 MSM, V3 MSM + SPSD, V4 MSM + oracle-label
# head) -> evaluate/{task}/{arm}/seed{seed} (streaming loop per head x tau, wait-k, read-then-generate,
# oracle; AUROC vs oracle sufficiency) -> analysis (claims A1-A3, intervals over seeds) -> report.
# names are unique across rule files: the narrow lambdas read them when jobs are planned
PLLM = PARAMS["proactivellm"][PROFILE]
PLLM_TASKS = [{"task": t} for t in sorted(PLLM["tasks"])]
PLLM_RUNS = product(task=sorted(PLLM["tasks"]), arm=sorted(PLLM["arms"]), seed=PLLM["seeds"])

data = stage("proactivellm", "data", each=PLLM_TASKS, reads=["data"])
pretrain = stage("proactivellm", "pretrain", input={"data": data}, each=PLLM_TASKS,
                 reads=["tasks", "model", "streaming", "pretrain"], mem_mb=3000, gpu=True)
# tiny matrices: 1-thread jobs side by side beat 2-thread jobs one after the other; each job depends
# on its own task and arm only, so editing another re-runs nothing here
train = stage("proactivellm", "train", input={"data": data, "backbone": pretrain}, each=PLLM_RUNS,
              reads=["tasks", "model", "streaming", "arms", "train"], mem_mb=3000, gpu=True, snapshot=True,
              narrow={"tasks": lambda wc: PLLM["tasks"][wc.task], "arms": lambda wc: PLLM["arms"][wc.arm]})
stage("proactivellm", "evaluate", input={"data": data, "train": train}, each=PLLM_RUNS,
      reads=["tasks", "streaming", "evaluate"], mem_mb=3000, gpu=True, snapshot=True,
      narrow={"tasks": lambda wc: PLLM["tasks"][wc.task],
              "evaluate": lambda wc: {**PLLM["evaluate"], "policies": PLLM["evaluate"]["policies"][wc.arm]}})
stage("proactivellm", "analysis", input=outputs("proactivellm", "evaluate"), reads=["analysis"],
      summary=True, snapshot=True)
