# ProactiveLLM: data/{task} -> pretrain/{task} (the offline backbone, one seed, shared by every arm)
# -> train/{task}/{arm}/seed{seed} (V0 full, V1 wait-k, V2 MSM, V3 MSM + SPSD, V4 MSM + oracle-label
# head) -> evaluate/{task}/seed{seed} (every arm: streaming loop per head x tau, wait-k, fixed chunks,
# read-then-generate, oracle; AUROC vs oracle sufficiency; the backbone's read-then-generate point)
# -> analysis (A1-A3, intervals over seeds). The seed A/A control: the `aa_arm` (V1) trained and
# evaluated again on `aa_seeds`.
PROACTIVE = PARAMS["proactivellm"][PROFILE]
STREAM_TASKS = [{"task": t} for t in sorted(PROACTIVE["tasks"])]
STREAM_RUNS = (product(task=sorted(PROACTIVE["tasks"]), arm=sorted(PROACTIVE["arms"]), seed=PROACTIVE["seeds"])
               + product(task=sorted(PROACTIVE["tasks"]), arm=[PROACTIVE["aa_arm"]], seed=PROACTIVE["aa_seeds"]))


def proactive_trained_arm(arm):
    """An evaluate job's input for `arm`: every arm on a main seed, the A/A arm alone on an A/A seed."""
    path = results("proactivellm", "train", "{task}", arm, "seed{seed}")
    return lambda wc: path.format(**wc) if arm == PROACTIVE["aa_arm"] or int(wc.seed) in PROACTIVE["seeds"] else []


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
      input={"data": data, "backbone": pretrain, **{f"train_{arm}": proactive_trained_arm(arm) for arm in sorted(PROACTIVE["arms"])}},
      each=product(task=sorted(PROACTIVE["tasks"]), seed=PROACTIVE["seeds"] + PROACTIVE["aa_seeds"]),
      reads=["tasks", "streaming", "evaluate"], mem_mb=3000, gpu=True,
      narrow={"tasks": lambda tasks, wc: tasks[wc.task]})
stage("proactivellm", "analysis", input=outputs("proactivellm", "evaluate"), reads=["analysis", "aa_seeds", "aa_arm"],
      summary=True)
