# Memory-R2: data -> sft (shared model + one model per role) -> rl/{arm}/seed{seed} (GRPO, LoGo-GRPO,
# compute-matched GRPO, curriculum, separate parameters; GRPO again on the A/A seeds) -> analysis -> report.
MR2 = PARAMS["memory_r2"][PROFILE]
data = stage("memory_r2", "data", reads=["data"], mem_mb=1000)
sft = stage("memory_r2", "sft", input={"data": data}, reads=["policy", "sft", "rollout", "reward", "evaluate"],
            threads=config["threads"], gpu=True)
# only this arm's entry: editing another arm re-runs nothing here
stage("memory_r2", "rl", input={"data": data, "sft": sft},
      each=product(arm=list(MR2["arms"]), seed=MR2["rl"]["seeds"]) + product(arm=["grpo"], seed=MR2["rl"]["aa_seeds"]),
      reads=["rollout", "reward", "rl", "evaluate", "arms"],
      narrow={"arms": lambda arms, wc: {wc.arm: arms[wc.arm]}}, mem_mb=1500, gpu=True)
stage("memory_r2", "analysis", input={"sft": sft, **outputs("memory_r2", "rl")},
      reads=["data", "rollout", "reward", "rl", "arms"], mem_mb=1000, summary=True)
