"""The effects that decide R1-R3, their regimes and the seed A/A control, from the RL jobs' records,
and the report tables.

Pure functions over metrics dicts, so the decisions are unit-tested on constructed numbers. A run
record is an RL job's metrics plus `items` (its greedy test records, one per test conversation, the
same conversations in the same order for every arm and seed), `validation` (its validation points,
the SFT start first, each with every validation conversation's memory failure) and `credit` (LoGo
arms: [group, counterfactual value, advantage] per memory-changing op, per group kind).
Effects (repro.report.intervals):
- F1: arm minus arm per QA, paired by seed (same seed: same SFT init, same training conversations
  drawn) and QA; crossed seeds x items interval where the QAs of one conversation, which share its
  memory, are resampled together (`hierarchical(..., clusters=conversation ids)`).
- Memory failure: per test conversation (one value each), the same crossed interval.
- Credit: per LoGo seed, the correlation of counterfactual value with advantage within groups, on
  groups whose rewards differ, local minus global; Student-t over seeds.
- Seed A/A: the GRPO arm on disjoint seeds against GRPO on the main seeds (paired by position),
  through the F1 effect code of the claims.
- Regimes: R1, UPDATE and DELETE per test conversation (R1's three arms pooled per seed; Student-t);
  R2, the direct arm's memory failure at its last validation point minus the SFT start's (seeds x
  validation conversations); R3, the separate arm's F1 minus an empty memory's (seeds x QAs).
"""
from __future__ import annotations

import statistics

import numpy as np

from repro.report.intervals import by_design, hierarchical, mean_ci, prob_improvement, spread, unmeasured
from repro.report.verdicts import seed_control

TYPES = ("single", "temporal", "retraction", "multi")
OPS = ("insert", "update", "delete", "noop", "invalid")
R1_ARMS = ("grpo", "grpo_cm", "logo")
KINDS = ("global", "local")


def f1_items(run: dict) -> list[float]:
    return [x for r in run["items"] for x in r["f1"]]


def conversation_of_qa(run: dict) -> list[str]:
    return [r["id"] for r in run["items"] for _ in r["f1"]]


def failure_items(run: dict) -> list[float]:
    return [r["memory_failure"] for r in run["items"]]


def by_seed(rs: list[dict]) -> list[dict]:
    return sorted(rs, key=lambda r: r["seed"])


def paired(runs: dict, a: str, b: str, items=f1_items) -> dict:
    """`a` minus `b` over the seeds both ran, item by item; crossed interval (seeds x items, F1's QAs
    clustered by conversation), the items-only interval (`ci_items`) and rliable's probability of
    improvement."""
    other = {r["seed"]: r for r in runs[b]}
    pairs = [(r["seed"], r) for r in by_seed(runs[a]) if r["seed"] in other]
    diffs = [np.subtract(items(r), items(other[s])) for s, r in pairs]
    clusters = conversation_of_qa(pairs[0][1]) if items is f1_items else None
    scores = [[statistics.fmean(items(r)) for r in runs[arm]] for arm in (a, b)]
    return {**hierarchical(diffs, clusters=clusters), "seeds": [s for s, _ in pairs],
            "p_improvement": prob_improvement(*scores)}


def seed_aa(runs: dict, arm: str) -> dict:
    """The seed-only A/A control: `arm` on its A/A seeds minus `arm` on the main seeds, seed i of one
    set paired with seed i of the other, through the claims' F1 effect."""
    main, aa = by_seed(runs[arm]), by_seed(runs[f"{arm}_aa"])
    relabelled = [{**r, "seed": m["seed"]} for r, m in zip(aa, main)]
    e = paired({"aa": relabelled, "main": main}, "aa", "main")
    e["aa_seeds"] = [r["seed"] for r in aa[:len(relabelled)]]
    return seed_control(e, f"{arm} on seeds {e['aa_seeds']} - {arm} on seeds {e['seeds']}, F1 (the claims' effect code)")


def within_group_correlation(records: list) -> float | None:
    """Pearson correlation of counterfactual value and advantage after removing each group's means,
    pooled over groups: only who did better inside a group counts, not how groups differ."""
    groups: dict[str, list] = {}
    for g, value, adv in records:
        groups.setdefault(g, []).append((value, adv))
    dev = [np.asarray(r, float) - np.mean(r, 0) for r in groups.values() if len(r) > 1]
    if not dev:
        return None
    x, y = np.concatenate(dev).T
    sxx, syy = float((x * x).sum()), float((y * y).sum())
    return float((x * y).sum() / np.sqrt(sxx * syy)) if sxx > 0 and syy > 0 else None


def credit(runs: list[dict]) -> dict:
    """Local minus global within-group correlation per seed (seeds where both exist), Student-t."""
    rows = [(within_group_correlation(r["credit"]["local"]), within_group_correlation(r["credit"]["global"]))
            for r in by_seed(runs)]
    ok = [(lo, gl) for lo, gl in rows if lo is not None and gl is not None]
    if not ok:
        return {**unmeasured("no seed had ops with varying values and advantages in both kinds of group"),
                "local": None, "global": None}
    return {**mean_ci([lo - gl for lo, gl in ok]), "local": spread([lo for lo, _ in ok]),
            "global": spread([gl for _, gl in ok])}


def op_rate(runs: dict, arms: tuple, op: str) -> dict:
    """`op` per greedy test conversation, the arms pooled per seed (seeds all of them ran)."""
    seeds = sorted(set.intersection(*({r["seed"] for r in runs[a]} for a in arms)))
    rate = {a: {r["seed"]: r["test"]["ops_per_conversation"].get(op, 0.0) for r in runs[a]} for a in arms}
    return {**mean_ci([statistics.fmean(rate[a][s] for a in arms) for s in seeds]), "arms": list(arms),
            "by_arm": {a: statistics.fmean(rate[a][s] for s in seeds) for a in arms}}


def collapse(runs: list[dict]) -> dict:
    """Memory failure at the last validation point minus at the SFT start, per validation conversation."""
    rs = by_seed(runs)
    return {**hierarchical([np.subtract(r["validation"][-1]["failures"], r["validation"][0]["failures"]) for r in rs]),
            "seeds": [r["seed"] for r in rs], "last_step": rs[0]["validation"][-1]["step"]}


def above_empty(runs: list[dict], empty: list[dict]) -> dict:
    """Per-QA F1 of `runs` minus the empty memory's, clustered by conversation."""
    base = {"items": empty}
    rs = by_seed(runs)
    if conversation_of_qa(rs[0]) != conversation_of_qa(base):
        raise ValueError("the SFT stage's empty-memory records and the RL jobs tested different conversations")
    return hierarchical([np.subtract(f1_items(r), f1_items(base)) for r in rs], clusters=conversation_of_qa(base))


def share(num: float, den: float) -> float | None:
    return num / den if den else None


def arm_summary(rs: list[dict]) -> dict:
    by_type = {t: spread([r["test"]["f1_by_type"][t] for r in rs]) for t in TYPES
               if all(t in r["test"]["f1_by_type"] for r in rs)}
    return {"seeds": sorted(r["seed"] for r in rs), "f1": spread([r["test"]["f1"] for r in rs]),
            "f1_by_type": by_type,
            "memory_failure": spread([r["test"]["memory_failure"] for r in rs]),
            "memory_entries": spread([r["test"]["memory_entries"] for r in rs]),
            "ops_per_conversation": {k: statistics.fmean(r["test"]["ops_per_conversation"].get(k, 0) for r in rs)
                                     for k in OPS},
            "penalty_nonzero_train": {k: statistics.fmean(r["penalty_nonzero"][k] for r in rs) for k in KINDS},
            "penalty_nonzero_test": statistics.fmean(r["test"]["penalty_nonzero"] for r in rs),
            "penalty_test": statistics.fmean(r["test"]["penalty"] for r in rs),
            "equal_reward_share": {k: share(sum(r["equal_reward_groups"][k] for r in rs), sum(r["groups"][k] for r in rs))
                                   for k in KINDS},
            "selected_steps": [r["selected_step"] for r in by_seed(rs)],
            "validation_points": sorted({r["validation_points"] for r in rs}),
            "session_rollouts_per_step": statistics.fmean(r["session_rollouts_per_step"] for r in rs),
            "updates": statistics.fmean(r["updates"] for r in rs),
            "singletons": sum(r["singletons"] for r in rs),
            "seconds_per_step": statistics.fmean(r["seconds_per_step"] for r in rs)}


ORDER = ("grpo", "grpo_cm", "logo", "curriculum", "separate", "grpo_aa")


def decide(runs: dict[str, list[dict]], sft: dict) -> dict:
    """`runs`: arm -> run records (one per seed; the A/A seeds of the GRPO arm under `grpo_aa`);
    `sft`: the SFT stage's metrics plus `items`, its test records (shared, separate, empty memory)."""
    arms = {name: arm_summary(runs[name]) for name in sorted(runs, key=lambda a: (a not in ORDER, ORDER.index(a)
                                                                                   if a in ORDER else a))}
    ratio = arms["grpo_cm"]["session_rollouts_per_step"] / arms["logo"]["session_rollouts_per_step"]
    return {
        "arms": arms, "sft": sft["test"], "test_conversations": len(runs["logo"][0]["items"]),
        "test_qas": len(f1_items(runs["logo"][0])),
        "r1": {"logo_vs_grpo": paired(runs, "logo", "grpo"),
               "logo_vs_compute_matched": paired(runs, "logo", "grpo_cm"),
               "credit_local_minus_global": credit(runs["logo"]),
               "compute_matched_ratio": by_design(ratio, "grpo_cm's group size n+1 against LoGo's n global "
                                                  "rollouts plus its local re-rolls, session rollouts per step "
                                                  "counted in the runs")},
        "r2": {"f1": paired(runs, "curriculum", "logo"),
               "memory_failure": paired(runs, "curriculum", "logo", failure_items),
               "updates_ratio": by_design(arms["curriculum"]["updates"] / arms["logo"]["updates"],
                                          "optimizer updates counted in the runs: equal total updates")},
        "r3": {"shared_minus_separate": paired(runs, "logo", "separate")},
        "regime": {"r1_update": op_rate(runs, R1_ARMS, "update"), "r1_delete": op_rate(runs, R1_ARMS, "delete"),
                   "r2_direct_collapse": collapse(runs["logo"]),
                   "r3_above_empty": above_empty(runs["separate"], sft["items"]["empty"])},
        "controls": {"seed_aa": seed_aa(runs, "grpo")},
    }


def _v(x, pct: bool = False) -> str:
    return "n/a" if x is None else (f"{100 * x:+.1f}" if pct else f"{x:+.3f}")


def _ci(ci, pct: bool = False) -> str:
    return "n/a (one seed)" if ci[0] is None else f"[{_v(ci[0], pct)}, {_v(ci[1], pct)}]"


def _pct(x) -> str:
    return "n/a" if x is None else f"{100 * x:.0f}%"


def design_lines(m: dict, params: dict) -> list[str]:
    """What the run did, including the choices the spec leaves open."""
    ro, rl, arms, rew = params["rollout"], params["rl"], params["arms"], params["reward"]
    logo, src = arms["logo"]["local"], params["data"]["source"]
    world = (f"- FactWorld (generated, fixed word lists): {src['people']} people per dialogue, {src['chunks']} "
             f"utterances per session, {src['sessions']} sessions at validation and test; training pools of "
             f"{', '.join(map(str, src['train_sessions']))} sessions ({src['train']} dialogues each)."
             if src["kind"] == "generated" else "- Conversations: the hub splits named in the params.")
    basis = ("the words of the dialogue's gold facts so far (what an agent that inserts every fact writes; "
             "FactWorld's facts are ~0.4 of its words, so no memory reaches 0.7 of the dialogue)"
             if rew["basis"] == "facts" else "the dialogue's words so far (the spec)")
    return [
        "## Design", "", world,
        f"- Seeds vary the RL stage only (conversation draws, sampling, local-group coins); the data and the SFT "
        f"warm start are shared by every arm and seed. Every arm is tested greedily on the same "
        f"{m['test_conversations']} test conversations ({m['test_qas']} QAs): arms are paired by seed and QA, and "
        "the QAs of one conversation are resampled together.",
        "- A chunk is one utterance; the extractor writes its fact as `person attribute value` (`nothing` for "
        "chit-chat), the manager sees it beside the top-k memories a keyword retrieval on person and attribute "
        "returns and writes `insert`, `update mJ`, `delete mJ` or `noop` (NONE). The frozen answerer retrieves "
        "by keyword from the memory alone and answers with every matching value (`none` if none): a stale fact "
        "left beside the new one halves the precision of the token F1.",
        f"- Compression penalty: lambda {rew['lam']} x max(0, memory words - {rew['threshold']} x basis) / basis, "
        f"basis = {basis}. Memory failure: the share of the dialogue's (person, attribute) keys the memory gets "
        "wrong (current value missing, a stale or wrong value kept, a retracted value kept, an invented key).",
        f"- RL: {rl['steps']} steps per arm x {rl['epochs']} PPO epochs, {ro['conversations_per_step']} "
        f"conversations x n rollouts per step, KL {rl['kl_coef']} to the SFT policy, entropy {rl['entropy_coef']}; "
        f"LoGo: p {logo['p']}, m {logo['m']}, local temperature {logo['temperature']} (the spec's default, the "
        f"global one; the public code re-rolls greedily); singleton groups: {rl['singleton']} "
        f"({sum(a['singletons'] for a in m['arms'].values())} met in all runs). Every arm validates at the same "
        f"{rl['val_points']} evenly spaced steps and is tested from the best of those and the SFT start "
        f"({rl['val_points'] + 1} candidates); the curriculum starts each stage from the best candidate so far. "
        "The direct arm of R2 is the LoGo arm. The seed-only A/A control trains GRPO again on seeds "
        f"{', '.join(map(str, rl['aa_seeds']))}.",
        f"- By design (measured): compute-matched GRPO runs {m['r1']['compute_matched_ratio']['value']:.3f}x "
        f"LoGo's session rollouts per step; the curriculum makes {m['r2']['updates_ratio']['value']:.3f}x the "
        "direct arm's updates.", ""]


def report_tables(m: dict, params: dict) -> str:
    lines = design_lines(m, params) + [
        "## Test results per arm (mean ± std over seeds; F1 and memory failure x 100)", "",
        "| arm | seeds | F1 | single | temporal | retraction | multi | memory failure | entries | "
        "insert / update / delete / noop / invalid per conv. | checkpoint step per seed (0 = SFT) |",
        "|---|---|---|---|---|---|---|---|---|---|---|"]
    cell = lambda d: "n/a" if d["n"] == 0 else f"{100 * d['mean']:.1f} ± {100 * d['std']:.1f}"  # noqa: E731
    for name, a in m["arms"].items():
        ops = " / ".join(f"{a['ops_per_conversation'][k]:.2f}" for k in OPS)
        lines.append(f"| {name} | {len(a['seeds'])} | {cell(a['f1'])} | "
                     + " | ".join(cell(a["f1_by_type"][t]) if t in a["f1_by_type"] else "n/a" for t in TYPES)
                     + f" | {cell(a['memory_failure'])} | {a['memory_entries']['mean']:.1f} | {ops} | "
                     f"{', '.join(map(str, a['selected_steps']))} |")
    for name, s in m["sft"].items():
        f, ops = s["f1_by_type"], " / ".join(f"{s['ops_per_conversation'].get(k, 0):.2f}" for k in OPS)
        label = "empty memory" if name == "empty" else f"SFT only ({name})"
        lines.append(f"| {label} | - | {100 * s['f1']:.1f} | "
                     + " | ".join(f"{100 * f[t]:.1f}" if t in f else "n/a" for t in TYPES)
                     + f" | {100 * s['memory_failure']:.1f} | {s['memory_entries']:.1f} | {ops} | - |")
    lines += ["", "## Compression penalty and group statistics (training rollouts; mean over seeds)", "",
              "| arm | penalty > 0: global rollouts | local re-rolls | greedy test conv. | mean test penalty | "
              "equal-reward groups: global | local | session rollouts / step | s / step |",
              "|---|---|---|---|---|---|---|---|---|"]
    for name, a in m["arms"].items():
        pn, eq = a["penalty_nonzero_train"], a["equal_reward_share"]
        lines.append(f"| {name} | {_pct(pn['global'])} | {_pct(pn['local']) if eq['local'] is not None else 'n/a'} | "
                     f"{_pct(a['penalty_nonzero_test'])} | {a['penalty_test']:.3f} | {_pct(eq['global'])} | "
                     f"{_pct(eq['local'])} | {a['session_rollouts_per_step']:.0f} | {a['seconds_per_step']:.2f} |")
    lines += ["", "## Effects (paired by seed and test QA / conversation; x 100)", "",
              "| effect | value | 95% CI (seeds x items) | 95% CI (items only) | P(improvement) | seeds |",
              "|---|---|---|---|---|---|"]
    for label, e in (("R1 LoGo - GRPO, F1", m["r1"]["logo_vs_grpo"]),
                     ("R1 LoGo - compute-matched GRPO, F1", m["r1"]["logo_vs_compute_matched"]),
                     ("R2 curriculum - direct, F1", m["r2"]["f1"]),
                     ("R2 curriculum - direct, memory failure", m["r2"]["memory_failure"]),
                     ("R3 shared - separate, F1", m["r3"]["shared_minus_separate"]),
                     ("seed A/A: GRPO (A/A seeds) - GRPO, F1", m["controls"]["seed_aa"]["effect"])):
        lines.append(f"| {label} | {_v(e['value'], True)} | {_ci(e['ci'], True)} | {_ci(e['ci_items'], True)} | "
                     f"{e['p_improvement']:.2f} | {', '.join(map(str, e['seeds']))} |")
    g = m["regime"]
    lines += ["", "## Regimes", "",
              f"- R1: UPDATE per test conversation, R1's arms pooled {_v(g['r1_update']['value'])} "
              f"{_ci(g['r1_update']['ci'])} (by arm: "
              + ", ".join(f"{a} {v:.2f}" for a, v in g["r1_update"]["by_arm"].items())
              + f"); DELETE {_v(g['r1_delete']['value'])} {_ci(g['r1_delete']['ci'])}.",
              f"- R2: the direct arm's validation memory failure at step {g['r2_direct_collapse']['last_step']} minus "
              f"at the SFT start {_v(g['r2_direct_collapse']['value'], True)} {_ci(g['r2_direct_collapse']['ci'], True)} "
              "points.",
              f"- R3: the separate arm's F1 minus an empty memory's {_v(g['r3_above_empty']['value'], True)} "
              f"{_ci(g['r3_above_empty']['ci'], True)} points.", ""]
    c = m["r1"]["credit_local_minus_global"]
    eq = m["arms"]["logo"]["equal_reward_share"]
    lines += ["## Credit diagnostic (LoGo arm)", "",
              f"Groups whose rewards are all equal assign no credit and are left out: {_pct(eq['global'])} of the "
              f"global groups (n = {params['arms']['logo']['group_size']}) and {_pct(eq['local'])} of the local "
              f"groups (m = {params['arms']['logo']['local']['m']})."]
    if c["local"] is None:
        return "\n".join(lines + [f"Not measured: {c.get('reason')}.", ""]) + "\n"
    lines += [f"Within-group correlation of an operation's counterfactual value (its session's reward with and "
              f"without it, the rest of the rollout replayed) with the advantage it was trained on, on groups "
              f"whose rewards differ: local groups {c['local']['mean']:.3f} ± {c['local']['std']:.3f}, global "
              f"groups {c['global']['mean']:.3f} ± {c['global']['std']:.3f} (mean ± std over {c['n']} seeds); "
              f"local - global {_v(c['value'])} {_ci(c['ci'])}.", ""]
    return "\n".join(lines) + "\n"
