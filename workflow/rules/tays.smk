# TaYS: data (streaming videos with scripted events, per-second units, 4-way questions) ; pretrain
# (captions of still clips: the shared start) -> train/{arm}/seed{seed} (TaYS, interleaved,
# per-second batch, holistic batch; the same batches per seed; the per-second batch arm again on the
# A/A seeds) -> evaluate/{arm}/seed{seed} (streaming
# decoding, TaYS on the dual KV cache) ; latency (measured compute costs, random init, A/A control) ->
# analysis (stream clock, rho and FPS sweeps, T1-T3, regimes and controls).
_tays = PARAMS["tays"][PROFILE]
TAYS_RUNS = (product(arm=_tays["arms"], seed=_tays["seeds"])
             + product(arm=[_tays["analysis"]["roles"]["batch_units"]], seed=_tays["aa_seeds"]))

# data reads only the tokenizer of `model` (token counts per unit)
data = stage("tays", "data", reads=["data", "model"], mem_mb=3000,
             narrow={"model": lambda model, wc: {"tokenizer": model.get("tokenizer")}})
# pretrain reads the frame rate and the answer format of `data` (the codec), not its videos
pretrain = stage("tays", "pretrain", reads=["data", "model", "pretrain"], mem_mb=3000, gpu=True,
                 narrow={"data": lambda d, wc: {"fps": d["fps"], "answer": d.get("answer", "letter")}})
# tiny matrices: 1-thread jobs side by side beat 2-thread jobs one after the other
train = stage("tays", "train", input={"data": data, "pretrain": pretrain}, each=TAYS_RUNS,
              reads=["data", "model", "train"], mem_mb=3000, gpu=True)
stage("tays", "evaluate", input={"data": data, "model": train}, each=TAYS_RUNS,
      reads=["data", "model", "evaluate"], mem_mb=2000, gpu=True)
stage("tays", "latency", reads=["data", "model", "latency"], timing=True, gpu=True)
stage("tays", "analysis",
      input={"data": data, **outputs("tays", "evaluate"), **outputs("tays", "train"),
             "latency": results("tays", "latency")},
      reads=["seeds", "aa_seeds", "arms", "data", "analysis"], summary=True)
