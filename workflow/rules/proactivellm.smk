# ProactiveLLM: data/{task} -> pretrain/{task} (the offline backbone, one seed, shared by every arm)
# -> train/{task}/{arm}/seed{seed} (V0 full, V1 wait-k, V2 MSM, V3 MSM + SPSD, V4 MSM + oracle-label
# head) -> evaluate/{task}/seed{seed} (every arm: streaming loop per head x tau, wait-k, fixed chunks,
# read-then-generate, oracle; AUROC vs oracle sufficiency; the backbone's read-then-generate point)
# -> analysis (A1-A3, intervals over seeds).
STREAM_TASKS = [{"task": t} for t in sorted(PARAMS["proactivellm"][PROFILE]["tasks"])]
STREAM_RUNS = product(task=sorted(PARAMS["proactivellm"][PROFILE]["tasks"]),
                      arm=sorted(PARAMS["proactivellm"][PROFILE]["arms"]), seed=PARAMS["proactivellm"][PROFILE]["seeds"])

data = stage("proactivellm", "data", each=STREAM_TASKS, reads=["data"])
pretrain = stage("proactivellm", "pretrain", input={"data": data}, each=STREAM_TASKS,
                 reads=["tasks", "model", "streaming", "pretrain"], mem_mb=3000, gpu=True)
# tiny matrices: 1-thread jobs side by side beat 2-thread jobs one after the other; each job depends
# on its own task and arm only, so editing another re-runs nothing here
train = stage("proactivellm", "train", input={"data": data, "backbone": pretrain}, each=STREAM_RUNS,
              reads=["tasks", "model", "streaming", "arms", "train"], mem_mb=3000, gpu=True,
              narrow={"tasks": lambda tasks, wc: tasks[wc.task], "arms": lambda arms, wc: arms[wc.arm]})
# one evaluation job per (task, seed): its arms' evaluations are short next to a job's imports
stage("proactivellm", "evaluate",
      input={"data": data, "backbone": pretrain, **{f"train_{arm}": results("proactivellm", "train", "{task}", arm, "seed{seed}")
                              for arm in sorted(PARAMS["proactivellm"][PROFILE]["arms"])}},
      each=product(task=sorted(PARAMS["proactivellm"][PROFILE]["tasks"]), seed=PARAMS["proactivellm"][PROFILE]["seeds"]),
      reads=["tasks", "streaming", "evaluate"], mem_mb=3000, gpu=True,
      narrow={"tasks": lambda tasks, wc: tasks[wc.task]})
stage("proactivellm", "analysis", input=outputs("proactivellm", "evaluate"), reads=["analysis"],
      summary=True)
