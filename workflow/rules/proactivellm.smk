# ProactiveLLM: data/{task} -> pretrain/{task} (shared backbone) -> train/{task} (arms V0 full, V1
# wait-k, V2 MSM, V3 MSM + SPSD, V4 MSM + oracle-label head) -> evaluate/{task} (streaming READ/WRITE
# loop per decision head x tau, wait-k, read-then-generate, oracle; AUROC vs oracle sufficiency) ->
# analysis (claims A1-A3) -> report.
TASKS = [{"task": t} for t in sorted(PARAMS["proactivellm"][PROFILE]["tasks"])]

data = stage("proactivellm", "data", each=TASKS, reads=["data"])
pretrain = stage("proactivellm", "pretrain", input={"data": data}, each=TASKS,
                 reads=["tasks", "model", "streaming", "pretrain"], mem_mb=3000, gpu=True)
# tiny matrices: the two tasks' 1-thread jobs side by side beat one 2-thread job
train = stage("proactivellm", "train", input={"data": data, "backbone": pretrain}, each=TASKS,
              reads=["tasks", "model", "streaming", "arms", "train"], mem_mb=3000, gpu=True,
              snapshot=True)
stage("proactivellm", "evaluate", input={"data": data, "train": train}, each=TASKS,
      reads=["tasks", "streaming", "evaluate"], mem_mb=3000, gpu=True, snapshot=True)
stage("proactivellm", "analysis", input=outputs("proactivellm", "evaluate"), reads=["analysis"],
      summary=True, snapshot=True)
