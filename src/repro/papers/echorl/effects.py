"""The effects that decide E1-E3, their regimes and the seed-only A/A control, from the RL jobs'
metrics and per-prompt results, and the report tables.

Pure functions over metrics dicts, so the decisions are unit-tested on constructed numbers. Every
run record is an RL job's metrics plus `correct`: {split: greedy correctness per prompt}, the same
prompts in the same order for every arm and seed evaluated on the same splits (test for the claims'
arms, validation for a design sweep). Effects (repro.report.intervals):
- E1: the rise of the all-success group fraction from the first to the last quarter of GRPO training,
  one value per GRPO seed, Student-t over seeds.
- E2, E3, the A/A control and the EchoClip-vs-base tables: arm minus arm on the seeds both ran
  (paired: same seed, same SFT init), per-prompt differences (paired: same prompts), one effect per
  split (ID and OOD are never pooled), crossed seeds x that split's prompts (`hierarchical_diff`),
  with the prompts-only interval beside it.
- Regimes: the share of each step's groups that gave an EchoClip (E2, E3), degenerate groups at the
  start of GRPO and GRPO above its SFT start (E1), the SFT model off the floor on OOD (E2).
"""
from __future__ import annotations

import statistics

from repro.report.intervals import hierarchical, hierarchical_diff, mean_ci, min_over, prob_improvement, spread
from repro.report.verdicts import seed_control

SPLITS = ("id", "ood")
ABLATIONS = (("random", "random_step"), ("min_entropy", "min_entropy"), ("whole_sft", "whole_sft"))


def accuracy(run: dict, split: str) -> float:
    c = run["correct"][split]
    return sum(c) / len(c)


def paired(runs: dict[str, list[dict]], a: str, b: str, split: str) -> dict:
    """`a` minus `b` on one split over the seeds both arms ran: per seed, the per-prompt differences;
    crossed interval (seeds x prompts) and the prompts-only one (`ci_items`); and, as the few-seed
    summary rliable reports, the probability that a run of `a` beats a run of `b`."""
    common = sorted({r["seed"] for r in runs[a]} & {r["seed"] for r in runs[b]})
    per_arm = [{r["seed"]: r["correct"][split] for r in runs[arm] if r["seed"] in common} for arm in (a, b)]
    scores = [[accuracy(r, split) for r in runs[arm]] for arm in (a, b)]
    return {**hierarchical_diff(*per_arm), "seeds": common, "p_improvement": prob_improvement(*scores)}


def split_aa(runs: list[dict], aa_seeds: list[int]) -> tuple[list[dict], list[dict]]:
    """The baseline arm's runs on its main seeds, and its A/A runs (`aa_seeds`) relabelled onto the
    main seeds positionally (the i-th A/A seed pairs with the i-th main seed), so the A/A goes
    through the claims' own paired effect code."""
    main = sorted((r for r in runs if r["seed"] not in aa_seeds), key=lambda r: r["seed"])
    aa = sorted((r for r in runs if r["seed"] in aa_seeds), key=lambda r: r["seed"])
    return main, [{**r, "aa_seed": r["seed"], "seed": m["seed"]} for r, m in zip(aa, main)]


def arm_summary(rs: list[dict]) -> dict:
    """Descriptive rows of the accuracy table: spread over seeds (mean, std, min, max, n)."""
    out = {split: spread([accuracy(r, split) for r in rs]) for split in SPLITS}
    out["avg"] = spread([(accuracy(r, "id") + accuracy(r, "ood")) / 2 for r in rs])
    out.update(seeds=sorted(r["seed"] for r in rs),
               seconds_per_step=statistics.fmean(r["seconds_per_step"] for r in rs),
               all_success_last_quarter=statistics.fmean(r["all_success_last_quarter"] for r in rs),
               clips_per_step=statistics.fmean(r["clips_per_step"] for r in rs),
               clip_share=statistics.fmean(r["clip_share"] for r in rs),
               steps_with_clip=statistics.fmean(r["steps_with_clip"] for r in rs))
    return out


def base_arm(arms: dict, name: str) -> str | None:
    """The arm without a clip that samples and is evaluated like `name` (GRPO, or the
    dynamic-sampling method; on test or on validation)."""
    same = [a for a, spec in arms.items()
            if spec["clip"] == "none" and spec.get("dynamic_sampling") == arms[name].get("dynamic_sampling")
            and spec.get("evaluate_on", "test") == arms[name].get("evaluate_on", "test")]
    return same[0] if same else None


def echo_vs_base(runs: dict[str, list[dict]], arms: dict) -> list[dict]:
    """Every max-entropy EchoClip arm in `runs` (the claims' echo arm, the second RLVR method, or the
    beta sweep on validation) against its base arm on the seeds both ran, paired by seed and prompt;
    with each arm's mean(ID, OOD) accuracy (the sweep's selection score)."""
    rows = []
    for name, spec in arms.items():
        base = base_arm(arms, name)
        if spec["clip"] != "max_entropy" or name not in runs:
            continue
        row = {"arm": name, "base": base, "beta": spec["beta"], "rollout_choice": spec["rollout_choice"],
               "score": statistics.fmean((accuracy(r, "id") + accuracy(r, "ood")) / 2 for r in runs[name]),
               "seeds": sorted(r["seed"] for r in runs[name])}
        if base in runs:
            row.update({split: paired(runs, name, base, split) for split in SPLITS})
        rows.append(row)
    return sorted(rows, key=lambda r: (str(r["base"]), r["beta"], r["arm"]))


def validation_sweep(runs: dict[str, list[dict]], arms: dict) -> dict:
    """The beta sweep on the validation prompts: every EchoClip arm evaluated on validation, and the
    beta whose arm scores the highest mean(ID, OOD) validation accuracy (the rule params state)."""
    val_arms = {a: s for a, s in arms.items() if s.get("evaluate_on") == "validation"}
    rows = echo_vs_base({a: runs[a] for a in val_arms if a in runs}, val_arms)
    best = max(rows, key=lambda r: r["score"]) if rows else None
    return {"rows": rows, "chosen_beta": best["beta"] if best else None,
            "base": {a: arm_summary(runs[a]) for a, s in val_arms.items() if s["clip"] == "none" and a in runs}}


def regimes(grpo: list[dict], runs: dict[str, list[dict]], sft_correct: dict) -> dict:
    """The claims' preconditions, each an effect whose threshold params state."""
    clips = {arm: [r["clip_share"] for r in runs[arm]] for arm in ("echo", "random_step", "min_entropy") if arm in runs}
    return {
        # E1: degenerate groups exist when GRPO starts, and GRPO moves the policy above its SFT start
        "degenerate_at_start": mean_ci([r["all_success_first_quarter"] for r in grpo]),
        "grpo_over_sft": hierarchical([[x - y for x, y in zip(r["correct"]["id"], sft_correct["id"], strict=True)]
                                       for r in grpo]),
        # E2/E3: EchoClip acts, in the echo arm and (E3) in every arm whose clip end is compared
        "clip_share": mean_ci(clips["echo"]),
        "clip_share_every_arm": min_over(clips),
        # E2's OOD half: the SFT model solves the OOD split at all (one model, its prompts)
        "ood_baseline": mean_ci(sft_correct["ood"], unit="items"),
    }


def decide(runs: dict[str, list[dict]], sft: dict, arm_params: dict) -> dict:
    """`runs`: arm -> run records (one per seed); `sft`: the SFT stage's metrics plus `correct`, its
    per-prompt test results. Arms evaluated on validation go to the sweep, never to a claim."""
    sweep = validation_sweep(runs, arm_params)
    runs = {a: rs for a, rs in runs.items() if arm_params[a].get("evaluate_on", "test") == "test"}
    grpo, aa = split_aa(runs["grpo"], arm_params["grpo"].get("aa_seeds", []))
    runs = {**runs, "grpo": grpo}
    quarters = {q: [r[f"all_success_{q}_quarter"] for r in grpo] for q in ("first", "last")}
    e1 = {"increase": mean_ci([b - a for a, b in zip(quarters["first"], quarters["last"])]),
          "first_quarter": spread(quarters["first"]), "last_quarter": spread(quarters["last"]),
          "pg_norm_first_quarter": spread([r["pg_norm_first_quarter"] for r in grpo]),
          "pg_norm_last_quarter": spread([r["pg_norm_last_quarter"] for r in grpo])}
    e2 = {split: paired(runs, "echo", "grpo", split) for split in SPLITS}
    e2["overhead"] = (statistics.fmean(r["seconds_per_step"] for r in runs["echo"]) /
                      statistics.fmean(r["seconds_per_step"] for r in grpo) - 1)
    e3 = {f"vs_{short}": {split: paired(runs, "echo", arm, split) for split in SPLITS}
          for short, arm in ABLATIONS if arm in runs}
    controls = {}
    if aa:
        pair = {"grpo_aa": aa, "grpo": grpo}
        for split in SPLITS:
            e = {**paired(pair, "grpo_aa", "grpo", split), "aa_seeds": [r["aa_seed"] for r in aa]}
            controls[f"seed_aa_{split}"] = seed_control(
                e, f"GRPO on seeds {e['aa_seeds']} minus GRPO on seeds {e['seeds']}, {split.upper()} accuracy "
                "(E2/E3's paired effect code)")
    return {"arms": {name: arm_summary(runs[name]) for name in arm_params if name in runs},
            "aa_arm": arm_summary(aa) if aa else None,
            "sft": {k: sft[k] for k in ("id_accuracy", "ood_accuracy", "steps")},
            "test_prompts": {split: len(grpo[0]["correct"][split]) for split in SPLITS},
            "entropy_profile": sft["entropy_profile"], "e1": e1, "e2": e2, "e3": e3,
            "regime": regimes(grpo, runs, sft["correct"]), "controls": controls,
            "echo_vs_base": echo_vs_base(runs, arm_params), "sweep": sweep}
