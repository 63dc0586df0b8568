# EchoRL: data -> sft -> rl/{arm}/seed{seed} (GRPO, +EchoClip, ablations, the beta sweep on validation,
# DAPO-style dynamic sampling +/- EchoClip) -> analysis -> report.
# an arm may run on fewer seeds than rl.seeds (ablations, beta sweep, DAPO arms); GRPO also runs on
# its A/A seeds (the seed-only control)
RL_RUNS = [{"arm": a, "seed": s} for a, spec in PARAMS["echorl"][PROFILE]["arms"].items()
           for s in spec.get("seeds", PARAMS["echorl"][PROFILE]["rl"]["seeds"]) + spec.get("aa_seeds", [])]

data = stage("echorl", "data", reads=["data"], mem_mb=1000)
sft = stage("echorl", "sft", input={"data": data}, reads=["policy", "sft", "evaluate"],
            threads=config["threads"], gpu=True)
# only this arm's entry (less its seed list): editing another arm re-runs nothing here
stage("echorl", "rl", input={"data": data, "sft": sft}, each=RL_RUNS,
      reads=["rollout", "rl", "evaluate", "arms"],
      narrow={"arms": lambda arms, wc: {k: v for k, v in arms[wc.arm].items() if k not in ("seeds", "aa_seeds")}},
      mem_mb=1500, gpu=True)
# data, sft, rollout, rl: the report's design section names the split, the SFT stop and the sampling
stage("echorl", "analysis", input={"sft": sft, **outputs("echorl", "rl")},
      reads=["arms", "data", "sft", "rollout", "rl"], mem_mb=1000,
      summary=True)
