# TaYS: data (streaming videos with scripted events, per-second units, 4-way questions) ->
# train/{arm}/seed{seed} (TaYS, interleaved, per-second batch, holistic batch; same init and batches
# per seed) -> evaluate/{arm}/seed{seed} (streaming decoding, TaYS on the dual KV cache) ; latency
# (measured compute costs, random init, A/A control) -> analysis (stream clock, rho and FPS sweeps,
# T1-T3).
TAYS_RUNS = product(arm=PARAMS["tays"][PROFILE]["arms"], seed=PARAMS["tays"][PROFILE]["seeds"])

# data reads only the tokenizer of `model` (token counts per unit)
data = stage("tays", "data", reads=["data", "model"], mem_mb=3000,
             narrow={"model": lambda model, wc: {"tokenizer": model.get("tokenizer")}})
# tiny matrices: 1-thread jobs side by side beat 2-thread jobs one after the other
train = stage("tays", "train", input={"data": data}, each=TAYS_RUNS, reads=["data", "model", "train"],
              mem_mb=3000, gpu=True)
stage("tays", "evaluate", input={"data": data, "model": train}, each=TAYS_RUNS,
      reads=["data", "model", "evaluate"], mem_mb=2000, gpu=True)
stage("tays", "latency", reads=["data", "model", "latency"], timing=True, gpu=True)
stage("tays", "analysis",
      input={"data": data, **outputs("tays", "evaluate"), **outputs("tays", "train"),
             "latency": results("tays", "latency")},
      reads=["seeds", "arms", "data", "analysis"], summary=True)
