"""The effects that decide V1-V2 from the agent jobs' per-task records, and the report tables.

Pure functions over run records, so the decisions are unit-tested on constructed numbers. A run is
one arm on one (task order, seed); its `items` are the per-task records of the agent stage. Arms
that share an order and seed are paired: the same stream order, the same held-out tasks, the same
per-task random streams. Effects (repro.report.intervals):
- V1: held-out Pass@1 of arm a minus arm b, per run the per-task differences, interval over runs
  then tasks within runs (`hierarchical`), with the tasks-only interval beside it.
- V2: the full arm's online slope (least-squares slope of per-task Pass@1 over the online stream,
  scaled to the whole stream: the change from its start to its end), interval over runs; the
  largest drawdown of the online curve (Pass@1 in consecutive blocks; the largest fall from a block
  to any later one), full minus asset-only paired by run.
"""
from __future__ import annotations

import statistics

import numpy as np

from repro.report.intervals import hierarchical, mean_ci, paired_diff, spread

PAIRS = {"full_minus_asset": ("full", "asset"), "asset_minus_experience": ("asset", "experience"),
         "experience_minus_static": ("experience", "static")}
UNIT = "runs (orders x seeds)"
ARMS = ("static", "experience", "asset", "full")  # table order


def phase(run: dict, name: str) -> list[dict]:
    return [r for r in run["items"] if r["phase"] == name]


def key(run: dict) -> tuple[int, int]:
    return run["order"], run["seed"]


def paired_heldout(runs: dict[str, list[dict]], a: str, b: str) -> dict:
    """a - b held-out Pass@1 on the runs both arms share, paired by task."""
    by = {key(r): r for r in runs[b]}
    pairs = sorted((key(r), r) for r in runs[a] if key(r) in by)
    diffs = []
    for k, r in pairs:
        ours, theirs = phase(r, "heldout"), phase(by[k], "heldout")
        if [x["task_id"] for x in ours] != [x["task_id"] for x in theirs]:
            raise ValueError(f"{a} and {b} at order/seed {k} were held out on different tasks")
        diffs.append([float(x["passed"]) - float(y["passed"]) for x, y in zip(ours, theirs)])
    return {**hierarchical(diffs), "runs": [list(k) for k, _ in pairs]}


def slope(passed: list[bool]) -> float:
    """Least-squares slope of Pass@1 over the stream position scaled to [0, 1]."""
    y = np.asarray(passed, float)
    x = np.linspace(0.0, 1.0, y.size)
    return float(np.polyfit(x, y, 1)[0])


def curve(passed: list[bool], blocks: int) -> list[float]:
    """Pass@1 in `blocks` consecutive blocks of (nearly) equal size."""
    return [float(np.mean(c)) for c in np.array_split(np.asarray(passed, float), blocks)]


def drawdown(values: list[float]) -> float:
    """The largest fall from a point of the curve to any later point (0 for a curve that never falls)."""
    peak, worst = -np.inf, 0.0
    for v in values:
        peak = max(peak, v)
        worst = max(worst, peak - v)
    return float(worst)


def online(run: dict) -> list[bool]:
    return [r["passed"] for r in phase(run, "online")]


def arm_summary(rs: list[dict], blocks: int) -> dict:
    """Descriptive rows: Pass@1 per phase, curve, tools, reuse and transfer (spread over runs)."""
    rate = lambda r, ph: statistics.fmean(x["passed"] for x in phase(r, ph))  # noqa: E731
    out = {ph: spread([rate(r, ph) for r in rs]) for ph in ("online", "heldout", "transfer")}
    solved = [[x for x in phase(r, "online") if x["solved_visible"]] for r in rs]
    used = [[x for x in phase(r, ph) if x["tools_used"]] for r in rs for ph in ("online", "heldout", "transfer")]
    n_used = sum(len(x["tools_used"]) for u in used for x in u)
    out.update(
        runs=sorted(list(key(r)) for r in rs),
        curve=np.mean([curve(online(r), blocks) for r in rs], 0).tolist(),
        slope=spread([slope(online(r)) for r in rs]), drawdown=spread([drawdown(curve(online(r), blocks)) for r in rs]),
        tools_created=spread([r["tools_created"] for r in rs]), tools_active=spread([r["tools_active"] for r in rs]),
        asset_count=np.mean([[x["active_tools"] for x in r["items"] if x["phase"] in ("init", "online")] for r in rs],
                            0).tolist(),
        # share of online tasks solved (visible examples) with a program that calls a tool
        reuse_rate=statistics.fmean(sum(bool(x["tools_used"]) for x in s) / max(1, len(s)) for s in solved),
        # share of tool calls (all phases) whose tool was created by another category's task
        cross_category_share=(sum(x["tools_from_other_category"] for u in used for x in u) / n_used) if n_used else None,
        proposals={k: statistics.fmean(r["proposals"].get(k, 0) for r in rs)
                   for k in ("kept", "duplicate", "fails its tests", "length")},
        demoted=statistics.fmean(sum(len(x["demoted"]) for x in r["items"]) for r in rs),
        by_category={c: statistics.fmean(statistics.fmean(x["passed"] for x in phase(r, "heldout") if x["category"] == c)
                                         for r in rs)
                     for c in sorted({x["category"] for x in phase(rs[0], "heldout")})})
    return out


def decide(runs: dict[str, list[dict]], calibration: dict, blocks: int) -> dict:
    """`runs`: arm -> run records (metrics + items), `calibration`: the calibrate stage's metrics."""
    v1 = {name: paired_heldout(runs, a, b) for name, (a, b) in PAIRS.items()}
    full = sorted(runs["full"], key=key)
    by_asset = {key(r): r for r in runs["asset"]}
    shared = [r for r in full if key(r) in by_asset]
    dd = [drawdown(curve(online(r), blocks)) for r in shared]
    dd_asset = [drawdown(curve(online(by_asset[key(r)]), blocks)) for r in shared]
    v2 = {"full_slope": mean_ci([slope(online(r)) for r in full], UNIT),
          "drawdown_full_minus_asset": {**paired_diff(dd, dd_asset, UNIT), "full": dd, "asset": dd_asset}}
    order = sorted(runs, key=lambda a: (ARMS.index(a) if a in ARMS else len(ARMS), a))
    return {"arms": {a: arm_summary(runs[a], blocks) for a in order},
            "calibration": {k: calibration[k] for k in ("budget", "static_pass", "static_pass_by_budget", "target",
                                                        "by_category", "by_depth", "deeper_than_search")},
            "heldout_tasks": len(phase(full[0], "heldout")), "online_tasks": len(online(full[0])),
            "v1": v1, "v2": v2}


def _pt(x) -> str:
    return "n/a" if x is None else f"{100 * x:+.1f}"


def _ci(ci) -> str:
    return "n/a" if ci[0] is None else f"[{_pt(ci[0])}, {_pt(ci[1])}]"


def report_tables(m: dict, params: dict) -> str:
    """Markdown: design choices, what the seeds vary, calibration, V1 / V2 effects, per-arm table,
    held-out Pass@1 per category."""
    c, mem, arms = m["calibration"], params["memory"], m["arms"]
    grid, depths = sorted(c["static_pass_by_budget"], key=int), sorted(c["by_depth"], key=int)
    n_runs = len(arms["full"]["runs"])
    lines = [
        "## Design choices where the spec is silent", "",
        f"- Programs: sequences of 1-{params['search']['max_len']} tokens (DSL functions or tools) applied left to "
        f"right; search budget {c['budget']} unique candidates per task, chosen by the calibration below.",
        f"- Memories: experience = smoothed bigram/unigram counts of what worked per category (alpha "
        f"{mem['prior']['alpha']}, explore {mem['prior']['explore']}), failures shift the length prior and give "
        f"partial credit; tools = named compositions of {mem['tool_min_len']}-{mem['tool_max_len']} functions, "
        f"at most {mem['tools_per_task']} recruited per task, demoted after {mem['demote_after']} fails below a "
        f"{mem['demote_below']} win rate; experience-guided tools need support {mem['min_support']}.",
        f"- Protocol: the first {mem['init_tasks']} tasks of each ordered stream initialise the memories (not "
        f"scored); {m['online_tasks']} online tasks; {m['heldout_tasks']} held-out tasks (stream categories) "
        "and the transfer tasks (categories absent from the stream) with frozen memories.",
        "- Expert agents (the paper's agent bank) are not modelled: Asset Memory holds tools only. The "
        "experience-only and asset-only arms are internal ablations (the paper's RQ1 style), not the external "
        "frameworks the paper compares with.", "",
        "## Seeds", "",
        f"The task set and the calibration are one job each. Every arm runs on the same {n_runs} (task order, "
        "seed) pairs: the order permutes the stream, the seed the search's random draws (per task, shared by "
        "the arms). Effects are paired by run and, for held-out Pass@1, by task.", "",
        "## Calibration (static toolset: primitives, uniform prior, no memory; stream tasks)", "",
        "| budget | " + " | ".join(grid) + " |", "|---|" + "---|" * len(grid),
        "| static Pass@1 | " + " | ".join(f"{100 * c['static_pass_by_budget'][b]:.1f}%" for b in grid) + " |", "",
        f"Chosen budget {c['budget']}: static Pass@1 {100 * c['static_pass']:.1f}% (target "
        f"{100 * c['target'][0]:.0f}-{100 * c['target'][1]:.0f}%). {100 * c['deeper_than_search']:.0f}% of the stream's "
        "targets are longer than a program may be without tools.", "",
        "| target depth | " + " | ".join(depths) + " |", "|---|" + "---|" * len(depths),
        "| tasks | " + " | ".join(str(c["by_depth"][d]["tasks"]) for d in depths) + " |",
        "| static Pass@1 | " + " | ".join(f"{100 * c['by_depth'][d]['static_pass']:.0f}%" for d in depths) + " |", "",
        "| category | " + " | ".join(c["by_category"]) + " |", "|---|" + "---|" * len(c["by_category"]),
        "| static Pass@1 | " + " | ".join(f"{100 * v['static_pass']:.0f}%" for v in c["by_category"].values()) + " |", "",
        "## V1: held-out Pass@1 differences (points)", "",
        "| comparison | difference | 95% CI runs x tasks | 95% CI tasks only | runs |", "|---|---|---|---|---|"]
    for name, e in m["v1"].items():
        lines.append(f"| {name.replace('_', ' ')} | {_pt(e['value'])} | {_ci(e['ci'])} | {_ci(e['ci_items'])} | {e['n']} |")
    s, d = m["v2"]["full_slope"], m["v2"]["drawdown_full_minus_asset"]
    lines += ["", "## V2: stability of the full arm's online curve", "",
              f"Slope of online Pass@1 over the stream (start to end): {_pt(s['value'])} points, 95% CI {_ci(s['ci'])} "
              f"({s['n']} runs). Largest drawdown of the block curve, full minus asset-only: {_pt(d['value'])} points, "
              f"95% CI {_ci(d['ci'])} (full {', '.join(f'{100 * x:.0f}' for x in d['full'])}; asset-only "
              f"{', '.join(f'{100 * x:.0f}' for x in d['asset'])}).", "",
              "## Arms (mean ± std over runs)", "",
              "| arm | online Pass@1 | held-out | transfer | slope | drawdown | tools created / active | demoted | "
              "reuse rate | cross-category tool calls |", "|---|---|---|---|---|---|---|---|---|---|"]
    cell = lambda x: f"{100 * x['mean']:.1f} ± {100 * x['std']:.1f}"  # noqa: E731
    for a, x in arms.items():
        cross = "n/a" if x["cross_category_share"] is None else f"{100 * x['cross_category_share']:.0f}%"
        lines.append(f"| {a} | {cell(x['online'])} | {cell(x['heldout'])} | {cell(x['transfer'])} | {cell(x['slope'])} | "
                     f"{cell(x['drawdown'])} | {x['tools_created']['mean']:.1f} / {x['tools_active']['mean']:.1f} | "
                     f"{x['demoted']:.1f} | {100 * x['reuse_rate']:.0f}% | {cross} |")
    cats = list(arms["full"]["by_category"])
    lines += ["", "## Held-out Pass@1 per category (%, mean over runs)", "",
              "| arm | " + " | ".join(cats) + " |", "|---|" + "---|" * len(cats)]
    lines += [f"| {a} | " + " | ".join(f"{100 * x['by_category'][k]:.0f}" for k in cats) + " |" for a, x in arms.items()]
    lines += ["", "Tool proposals per run (mean): " + "; ".join(
        f"{a}: " + ", ".join(f"{k} {v:.1f}" for k, v in x["proposals"].items()) for a, x in arms.items()
        if x["tools_created"]["mean"]), ""]
    return "\n".join(lines) + "\n"
