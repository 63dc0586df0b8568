# HiDrop: data -> pretrain (every weight, every visual token; shared) -> finetune/{arm}/seed{seed}
# (each arm's visual-token schedule) -> evaluate/{arm}/seed{seed} (test accuracy per question type,
# visual tokens per layer counted in the forward, prefill FLOPs); speed (training step and prefill,
# random init, interleaved with vanilla + A/A); layers (vanilla arm's attention on visual tokens and
# block influence) -> analysis -> report. The vanilla arm also runs on `aa_seeds` (the seed A/A control).
# Arms no claim reads (ablations, the sweep beyond the headline) run on `descriptive_seeds` only.
HIDROP = PARAMS["hidrop"][PROFILE]
HIDROP_VANILLA = HIDROP["analysis"]["roles"]["vanilla"]
HIDROP_CLAIMED = [HIDROP["analysis"]["roles"][r] for r in ("vanilla", "blind", "hidrop", "pdrop")]
ARM_RUNS = (product(arm=HIDROP_CLAIMED, seed=HIDROP["seeds"])
            + product(arm=[a for a in HIDROP["arms"] if a not in HIDROP_CLAIMED], seed=HIDROP["descriptive_seeds"])
            + product(arm=[HIDROP_VANILLA], seed=HIDROP["aa_seeds"]))
# a job reads its arm's entry and the one whose budget it matches (PDrop): editing another re-runs nothing
OWN_ARM = {"arms": lambda arms, wc: {a: arms[a] for a in (wc.arm, arms[wc.arm].get("match")) if a}}

data = stage("hidrop", "data", reads=["data"], mem_mb=2000)
pretrain = stage("hidrop", "pretrain", input={"data": data}, reads=["model", "pretrain"],
                 threads=config["threads"], mem_mb=3000, gpu=True)
finetune = stage("hidrop", "finetune", input={"data": data, "model": pretrain}, each=ARM_RUNS,
                 reads=["model", "arms", "finetune"], narrow=OWN_ARM, mem_mb=2000, gpu=True)
stage("hidrop", "evaluate", input={"data": data, "model": finetune}, each=ARM_RUNS,
      reads=["model", "arms", "evaluate"], narrow=OWN_ARM, mem_mb=2000, gpu=True)
stage("hidrop", "speed", input={"data": data}, reads=["model", "arms", "speed"], timing=True, gpu=True)
stage("hidrop", "layers", input={"data": data, **{k: v for s in HIDROP["seeds"]
                                                  for k, v in outputs("hidrop", "finetune", arm=HIDROP_VANILLA, seed=s).items()}},
      reads=["model", "layers"], gpu=True)
stage("hidrop", "analysis",
      input={**outputs("hidrop", "evaluate"), **outputs("hidrop", "speed"), **outputs("hidrop", "layers")},
      reads=["seeds", "descriptive_seeds", "aa_seeds", "arms", "analysis", "pretrain", "finetune"], summary=True)
