# Mem2Evolve: data -> calibrate (search budget from the static toolset) -> agent/{arm}/{order}/seed{seed}
# (init, online, held-out and transfer phases) -> analysis -> report.
M2E = PARAMS["mem2evolve"][PROFILE]

data = stage("mem2evolve", "data", reads=["data"], mem_mb=1000)
calibrate = stage("mem2evolve", "calibrate", input={"data": data}, reads=["search"], mem_mb=1000)
# only this arm's entry: editing another arm re-runs nothing here; gpu: the LLM proposer at `paper`
stage("mem2evolve", "agent", input={"data": data, "calibrate": calibrate},
      each=product(arm=list(M2E["arms"]), order=M2E["runs"]["orders"], seed=M2E["runs"]["seeds"]),
      reads=["search", "memory", "proposer", "arms"],
      narrow={"arms": lambda arms, wc: {wc.arm: arms[wc.arm]}}, mem_mb=1000, gpu=True)
stage("mem2evolve", "analysis", input={"calibrate": calibrate, **outputs("mem2evolve", "agent")},
      reads=["search", "memory", "analysis"], mem_mb=1000, summary=True)
