# Mem2Evolve: data -> calibrate (search budget from the static toolset) -> agent/{arm}/seed{seed}
# (the seed's task orders; init, online, held-out snapshots and transfer phases; the static arm also on
# the A/A seeds) -> analysis -> report.
M2E = PARAMS["mem2evolve"][PROFILE]
AGENT_RUNS = (product(arm=list(M2E["arms"]), seed=M2E["runs"]["seeds"])
              + product(arm=["static"], seed=M2E["runs"]["aa_seeds"]))

data = stage("mem2evolve", "data", reads=["data"], mem_mb=1000)
calibrate = stage("mem2evolve", "calibrate", input={"data": data}, reads=["search"], mem_mb=1000)
# only this arm's entry and the protocol part of `runs`: editing another arm or the seed lists re-runs
# nothing here; gpu: the LLM proposer at `paper`
stage("mem2evolve", "agent", input={"data": data, "calibrate": calibrate}, each=AGENT_RUNS,
      reads=["search", "memory", "proposer", "arms", "runs"],
      narrow={"arms": lambda arms, wc: {wc.arm: arms[wc.arm]},
              "runs": lambda runs, wc: {k: runs[k] for k in ("orders", "heldout_snapshots")}},
      mem_mb=1000, gpu=True)
stage("mem2evolve", "analysis", input={"data": data, "calibrate": calibrate, **outputs("mem2evolve", "agent")},
      reads=["search", "memory", "runs", "analysis"], mem_mb=1000, summary=True)
