# EchoRL: data -> sft -> rl/{arm}/seed{seed} (GRPO, +EchoClip, ablations) -> analysis -> report.
ECHO = "echorl"
ECHO_ARMS = list(PARAMS[ECHO][PROFILE]["arms"])
# (arm, seed) pairs: an arm may run on fewer seeds than rl.seeds (beta sweep, DAPO arms)
ECHO_RUNS = [(a, s) for a, spec in PARAMS[ECHO][PROFILE]["arms"].items()
             for s in spec.get("seeds", PARAMS[ECHO][PROFILE]["rl"]["seeds"])]


rule echorl_data:
    input:
        code=code("repro.papers.echorl.data"),
    output:
        directory(results(ECHO, "data")),
    params:
        p=lambda wc: section(ECHO, ["data"]),
        inputs=named_inputs,
    threads: 1
    resources:
        mem_mb=1000,
    shell:
        stage(ECHO, "data", ["data"])


rule echorl_sft:
    input:
        data=rules.echorl_data.output[0],
        code=code("repro.papers.echorl.sft"),
    output:
        directory(results(ECHO, "sft")),
    params:
        p=lambda wc: section(ECHO, ["policy", "sft", "evaluate"]),
        inputs=named_inputs,
    threads: config["threads"]
    resources:
        mem_mb=2000,
    shell:
        stage(ECHO, "sft", ["policy", "sft", "evaluate"])


rule echorl_rl:
    input:
        data=rules.echorl_data.output[0],
        sft=rules.echorl_sft.output[0],
        code=code("repro.papers.echorl.rl"),
    output:
        directory(results(ECHO, "rl", "{arm}", "seed{seed}")),
    wildcard_constraints:
        arm="|".join(ECHO_ARMS),
        seed=r"\d+",
    params:
        # only this arm's entry (less its seed list): editing another arm re-runs nothing here
        p=lambda wc: {**section(ECHO, ["rollout", "rl", "evaluate"]),
                      "arm": {k: v for k, v in PARAMS[ECHO][PROFILE]["arms"][wc.arm].items() if k != "seeds"}},
        inputs=named_inputs,
    threads: 1
    resources:
        mem_mb=1500,
    shell:
        stage(ECHO, "rl", ["rollout", "rl", "evaluate", "arms"], wildcards=["arm", "seed"])


rule echorl_analysis:
    input:
        sft=rules.echorl_sft.output[0],
        **{f"rl_{a}_seed{s}": results(ECHO, "rl", a, f"seed{s}") for a, s in ECHO_RUNS},
        code=code("repro.papers.echorl.analysis"),
    output:
        report(
            directory(results(ECHO, "analysis")),
            patterns=["{name}.png"],
            caption="../report/echorl.rst",
            category="echorl",
        ),
    params:
        p=lambda wc: section(ECHO, ["arms"]),
        inputs=named_inputs,
    threads: 1
    resources:
        mem_mb=1000,
    shell:
        stage(ECHO, "analysis", ["arms"])


REPORT_INPUTS[ECHO] = {
    "summary": results(ECHO, "analysis"),
    "stages": [results(ECHO, "data"), results(ECHO, "sft")]
    + [results(ECHO, "rl", a, f"seed{s}") for a, s in ECHO_RUNS]
    + [results(ECHO, "analysis")],
}
SNAPSHOT[ECHO] = [results(ECHO, "sft"), results(ECHO, "analysis")]
