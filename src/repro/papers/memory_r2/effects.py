"""The effects that decide R1-R3, from the RL jobs' metrics and per-QA test results, and the report
tables.

Pure functions over metrics dicts, so the decisions are unit-tested on constructed numbers. A run
record is an RL job's metrics plus `items`: its greedy test records, one per test conversation (the
same conversations in the same order for every arm and seed), each with per-QA F1 and the
conversation's memory failure. Effects (repro.report.intervals):
- F1 differences: arm minus arm on the seeds both ran (paired: same seed, same SFT init, same
  training conversations drawn), per-QA differences (paired: same QAs), interval over seeds then QAs
  within seeds (`hierarchical`), with the QAs-only interval beside it.
- Memory failure: the same, per test conversation.
- Credit: per LoGo seed, corr(counterfactual value, advantage) over local ops minus over global ops,
  interval over seeds.
"""
from __future__ import annotations

import statistics

from repro.report.intervals import by_design, hierarchical, mean_ci, prob_improvement, spread, unmeasured

TYPES = ("single", "temporal", "retraction", "multi")
OPS = ("insert", "update", "delete", "noop", "invalid")


def f1_items(run: dict) -> list[float]:
    return [x for r in run["items"] for x in r["f1"]]


def failure_items(run: dict) -> list[float]:
    return [r["memory_failure"] for r in run["items"] if r["memory_failure"] is not None]


def paired(runs: dict, a: str, b: str, items=f1_items) -> dict:
    """`a` minus `b` over the seeds both ran, item by item; hierarchical interval (seeds x items),
    the items-only interval (`ci_items`) and rliable's probability of improvement."""
    by_seed = {r["seed"]: r for r in runs[b]}
    pairs = sorted(((r["seed"], r) for r in runs[a] if r["seed"] in by_seed), key=lambda p: p[0])
    diffs = [[x - y for x, y in zip(items(r), items(by_seed[s]), strict=True)] for s, r in pairs]
    scores = [[statistics.fmean(items(r)) for r in runs[arm]] for arm in (a, b)]
    return {**hierarchical(diffs), "seeds": [s for s, _ in pairs], "p_improvement": prob_improvement(*scores)}


def credit(runs: list[dict]) -> dict:
    """Local minus global advantage/counterfactual correlation per seed (seeds where both exist)."""
    rows = [r["credit"]["correlation"] for r in sorted(runs, key=lambda r: r["seed"])]
    ok = [c for c in rows if c["local"] is not None and c["global"] is not None]
    if not ok:
        return {**unmeasured("no seed had both local and global ops with varying values and advantages"),
                "local": None, "global": None}
    return {**mean_ci([c["local"] - c["global"] for c in ok]),
            "local": spread([c["local"] for c in ok]), "global": spread([c["global"] for c in ok])}


def arm_summary(rs: list[dict]) -> dict:
    by_type = {t: spread([r["test"]["f1_by_type"][t] for r in rs]) for t in TYPES
               if all(t in r["test"]["f1_by_type"] for r in rs)}
    return {"seeds": sorted(r["seed"] for r in rs), "f1": spread([r["test"]["f1"] for r in rs]),
            "f1_by_type": by_type,
            "memory_failure": spread([statistics.fmean(failure_items(r) or [0.0]) for r in rs]),
            "memory_entries": spread([r["test"]["memory_entries"] for r in rs]),
            "ops_per_conversation": {k: statistics.fmean(r["test"]["ops_per_conversation"].get(k, 0) for r in rs)
                                     for k in OPS},
            "session_rollouts_per_step": statistics.fmean(r["session_rollouts_per_step"] for r in rs),
            "updates": statistics.fmean(r["updates"] for r in rs),
            "singletons": sum(r["singletons"] for r in rs),
            "seconds_per_step": statistics.fmean(r["seconds_per_step"] for r in rs)}


def decide(runs: dict[str, list[dict]], sft: dict) -> dict:
    """`runs`: arm -> run records (one per seed); `sft`: the SFT stage's metrics."""
    order = ("grpo", "grpo_cm", "logo", "curriculum", "separate")
    arms = {name: arm_summary(runs[name]) for name in sorted(runs, key=lambda a: (a not in order, order.index(a)
                                                                                   if a in order else a))}
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
    }


def _v(x, pct: bool = False) -> str:
    return "n/a" if x is None else (f"{100 * x:+.1f}" if pct else f"{x:+.3f}")


def _ci(ci, pct: bool = False) -> str:
    return "n/a (one seed)" if ci[0] is None else f"[{_v(ci[0], pct)}, {_v(ci[1], pct)}]"


def design_lines(m: dict, params: dict) -> list[str]:
    """What the run did, including the choices the spec leaves open."""
    ro, rl, arms = params["rollout"], params["rl"], params["arms"]
    logo, src = arms["logo"]["local"], params["data"]["source"]
    world = (f"- FactWorld (generated, fixed word lists): {src['people']} people per dialogue, {src['chunks']} "
             f"utterances per session, {src['sessions']} sessions at validation and test; training pools of "
             f"{', '.join(map(str, src['train_sessions']))} sessions ({src['train']} dialogues each)."
             if src["kind"] == "generated" else "- Conversations: the hub splits named in the params.")
    return [
        "## Design", "", world,
        f"- Seeds vary the RL stage only (conversation draws, sampling, local-group coins); the data and the SFT "
        f"warm start are shared by every arm and seed. Every arm is tested greedily on the same "
        f"{m['test_conversations']} test conversations ({m['test_qas']} QAs): arms are paired by seed and QA.",
        "- A chunk is one utterance; the extractor writes its fact as `person attribute value` (`nothing` for "
        "chit-chat), the manager sees it beside the top-k memories a keyword retrieval on person and attribute "
        "returns and writes `insert`, `update mJ`, `delete mJ` or `noop` (NONE). The frozen answerer retrieves "
        "by keyword from the memory alone and answers with every matching value (`none` if none): a stale fact "
        "left beside the new one halves the precision of the token F1. Words are the tokens the compression "
        "penalty counts.",
        f"- RL: {rl['steps']} steps per arm x {rl['epochs']} PPO epochs, {ro['conversations_per_step']} "
        f"conversations x n rollouts per step, KL {rl['kl_coef']} to the SFT policy, entropy {rl['entropy_coef']}; "
        f"LoGo: p {logo['p']}, m {logo['m']}, local temperature {logo['temperature']} (the spec's default, the "
        f"global one; the public code re-rolls greedily); lambda {params['reward']['lam']}; singleton groups: "
        f"{rl['singleton']} ({sum(a['singletons'] for a in m['arms'].values())} met in all runs). Every arm "
        f"validates every {rl['val_every']} steps and is tested from its best-validation checkpoint; the "
        "curriculum warm-starts each stage from the previous stage's best. The direct arm of R2 is the LoGo arm.",
        f"- By design (measured): compute-matched GRPO runs {m['r1']['compute_matched_ratio']['value']:.3f}x "
        f"LoGo's session rollouts per step; the curriculum makes {m['r2']['updates_ratio']['value']:.3f}x the "
        "direct arm's updates.", ""]


def report_tables(m: dict, params: dict) -> str:
    lines = design_lines(m, params) + [
        "## Test results per arm (mean ± std over seeds; F1 x 100)", "",
        "| arm | seeds | F1 | single | temporal | retraction | multi | memory failure | entries | "
        "insert / update / delete / noop / invalid per conv. | session rollouts / step | s / step |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, a in m["arms"].items():
        cell = lambda d: "n/a" if d["n"] == 0 else f"{100 * d['mean']:.1f} ± {100 * d['std']:.1f}"  # noqa: E731
        ops = " / ".join(f"{a['ops_per_conversation'][k]:.1f}" for k in OPS)
        lines.append(f"| {name} | {len(a['seeds'])} | {cell(a['f1'])} | "
                     + " | ".join(cell(a["f1_by_type"][t]) if t in a["f1_by_type"] else "n/a" for t in TYPES)
                     + f" | {cell(a['memory_failure'])} | {a['memory_entries']['mean']:.1f} | {ops} | "
                     f"{a['session_rollouts_per_step']:.0f} | {a['seconds_per_step']:.2f} |")
    for name, s in m["sft"].items():
        f, ops = s["f1_by_type"], " / ".join(f"{s['ops_per_conversation'].get(k, 0):.1f}" for k in OPS)
        lines.append(f"| SFT only ({name}) | - | {100 * s['f1']:.1f} | "
                     + " | ".join(f"{100 * f[t]:.1f}" if t in f else "n/a" for t in TYPES)
                     + f" | {100 * (s['memory_failure'] or 0):.1f} | {s['memory_entries']:.1f} | {ops} | - | - |")
    lines += ["", "## Effects (paired by seed and test QA / conversation; x 100)", "",
              "| effect | value | 95% CI (seeds x items) | 95% CI (items only) | P(improvement) | seeds |",
              "|---|---|---|---|---|---|"]
    for label, e in (("R1 LoGo - GRPO, F1", m["r1"]["logo_vs_grpo"]),
                     ("R1 LoGo - compute-matched GRPO, F1", m["r1"]["logo_vs_compute_matched"]),
                     ("R2 curriculum - direct, F1", m["r2"]["f1"]),
                     ("R2 curriculum - direct, memory failure", m["r2"]["memory_failure"]),
                     ("R3 shared - separate, F1", m["r3"]["shared_minus_separate"])):
        lines.append(f"| {label} | {_v(e['value'], True)} | {_ci(e['ci'], True)} | {_ci(e['ci_items'], True)} | "
                     f"{e['p_improvement']:.2f} | {', '.join(map(str, e['seeds']))} |")
    c = m["r1"]["credit_local_minus_global"]
    lines += ["", "## Credit diagnostic (LoGo arm)", ""]
    if c["local"] is None:
        return "\n".join(lines + [f"Not measured: {c.get('reason')}.", ""]) + "\n"
    lines += [f"Correlation of an operation's counterfactual value (its session's reward with and without it, "
              f"the rest of the rollout replayed) with the advantage it was trained on: local groups "
              f"{c['local']['mean']:.3f} ± {c['local']['std']:.3f}, global groups {c['global']['mean']:.3f} ± "
              f"{c['global']['std']:.3f} (mean ± std over {c['n']} seeds); local - global {_v(c['value'])} "
              f"{_ci(c['ci'])}.", ""]
    return "\n".join(lines) + "\n"
