"""The effects that decide V1-V2 from the agent jobs' per-task records, and the report tables.

Pure functions over run records, so the decisions are unit-tested on constructed numbers. A run is
one arm on one seed: its `items` are the per-task records of the agent stage over the seed's task
orders (orders are nested within seeds: the seed draws them). Arms that share a seed are paired: the
same orders, the same held-out tasks, the same per-task random streams. Seeds are the top level of
resampling; an order's tasks depend on one another through the memories, so a seed's value is its
mean over its orders. Effects (repro.report.intervals):
- V1: held-out Pass@1 of arm a minus arm b: per seed, each held-out task's difference averaged over
  the seed's orders; the crossed seeds x tasks interval (`hierarchical`), tasks that share a target
  program forming one cluster (one tool or prior solves them all). Also on the held-out tasks whose
  target program no stream task has (`novel`).
- V2: the full arm's online slope (least-squares slope of Pass@1 over the online stream, scaled to
  the whole stream) minus the static arm's on the same stream orders (the static arm has no memory:
  its slope is the stream's difficulty drift), Student-t over seeds; the largest drawdown of the
  seed's online curve (Pass@1 in `drawdown_blocks` consecutive blocks pooled over its orders; the
  largest fall from a block to any later one), full minus asset-only, paired by seed.
- Controls: the static arm on disjoint seeds (`aa_seeds`) against the static arm, through V1's and
  V2's effect code, seed i with A/A seed i.
"""
from __future__ import annotations

import statistics

import numpy as np

from repro.report.intervals import hierarchical, mean_ci, paired_diff, spread, unmeasured
from repro.report.verdicts import seed_control

PAIRS = {"full_minus_asset": ("full", "asset"), "asset_minus_experience": ("asset", "experience"),
         "experience_minus_static": ("experience", "static")}
ARMS = ("static", "experience", "asset", "full")  # table order


def phase(run: dict, name: str, order: int | None = None) -> list[dict]:
    return [r for r in run["items"] if r["phase"] == name and (order is None or r["order"] == order)]


def orders(run: dict) -> list[int]:
    return sorted({r["order"] for r in run["items"]})


def task_matrix(run: dict, name: str, ids: list[str], field: str = "passed") -> np.ndarray:
    """[orders, tasks]: `field` (as a number) of each task of `ids` in phase `name`, per order."""
    rows = []
    for o in orders(run):
        by = {r["task_id"]: r for r in phase(run, name, o)}
        missing = set(ids) - set(by)
        if missing:
            raise ValueError(f"{run['arm']} seed {run['seed']} order {o}: phase {name!r} was not run on "
                             f"{len(missing)} of the {len(ids)} tasks the comparison needs")
        rows.append([float(bool(by[t][field])) for t in ids])
    return np.asarray(rows)


def seed_items(run: dict, ids: list[str], name: str = "heldout") -> np.ndarray:
    """Per task of `ids`: its Pass@1 in phase `name` averaged over the seed's orders."""
    return task_matrix(run, name, ids).mean(0)


def paired(a: list[dict], b: list[dict], what: str) -> list[tuple[dict, dict]]:
    """Runs of two arms on the same seeds, seed by seed."""
    by = {r["seed"]: r for r in b}
    if sorted(by) != sorted(r["seed"] for r in a):
        raise ValueError(f"{what}: the arms ran on different seeds ({sorted(r['seed'] for r in a)} vs {sorted(by)})")
    return [(r, by[r["seed"]]) for r in sorted(a, key=lambda r: r["seed"])]


def heldout_diff(pairs: list[tuple[dict, dict]], ids: list[str], clusters: list | None) -> dict:
    """a - b held-out Pass@1 over (run a, run b) pairs: crossed seeds x tasks, clustered by program."""
    return {**hierarchical([seed_items(a, ids) - seed_items(b, ids) for a, b in pairs], clusters),
            "seeds": [[a["seed"], b["seed"]] for a, b in pairs]}


def slope(passed: list[bool]) -> float:
    """Least-squares slope of Pass@1 over the stream position scaled to [0, 1]."""
    y = np.asarray(passed, float)
    x = np.linspace(0.0, 1.0, y.size)
    return float(np.polyfit(x, y, 1)[0])


def curve(passed, blocks: int) -> list[float]:
    """Pass@1 in `blocks` consecutive blocks of (nearly) equal size."""
    return [float(np.mean(c)) for c in np.array_split(np.asarray(passed, float), blocks)]


def drawdown(values: list[float]) -> float:
    """The largest fall from a point of the curve to any later point (0 for a curve that never falls)."""
    peak, worst = -np.inf, 0.0
    for v in values:
        peak = max(peak, v)
        worst = max(worst, peak - v)
    return float(worst)


def online(run: dict, order: int) -> list[bool]:
    return [r["passed"] for r in sorted(phase(run, "online", order), key=lambda r: r["position"])]


def seed_slope(run: dict) -> float:
    return statistics.fmean(slope(online(run, o)) for o in orders(run))


def seed_curve(run: dict, blocks: int) -> list[float]:
    """The seed's online curve: Pass@1 per block pooled over its orders."""
    return np.mean([curve(online(run, o), blocks) for o in orders(run)], 0).tolist()


def seed_drawdown(run: dict, blocks: int) -> float:
    return drawdown(seed_curve(run, blocks))


def heldout_curve(run: dict, snapshots: int) -> list[float]:
    """Held-out Pass@1 of the frozen memories at each snapshot (the last: the end of the stream), mean
    over orders; a memoryless arm solved the held-out set once (every snapshot is that)."""
    names = [f"snapshot{k}" for k in range(snapshots - 1)] + ["heldout"]
    final = statistics.fmean(r["passed"] for r in phase(run, "heldout"))
    return [statistics.fmean(r["passed"] for r in phase(run, n)) if phase(run, n) else final for n in names]


def tool_use(run: dict) -> float:
    """Share of held-out tasks (final memories, all orders) whose submitted program calls a tool."""
    return statistics.fmean(bool(r["tools_used"]) for r in phase(run, "heldout"))


def tools_added_online(run: dict) -> float:
    """Tools kept during the online phase, mean over the seed's orders."""
    return statistics.fmean(sum(len(r["kept"]) for r in phase(run, "online", o)) for o in orders(run))


def repeats(programs: dict[str, list[dict]]) -> dict:
    """How many held-out tasks repeat a stream program (the same composition of functions, not only
    the same outputs). `programs`: split -> [{task_id, program (JSON), motifs}]."""
    stream = {r["program"] for r in programs["stream"]}
    held = programs["heldout"]
    rep = [r["task_id"] for r in held if r["program"] in stream]
    return {"share": len(rep) / len(held), "tasks": len(held), "repeated": rep,
            "single_motif_share": statistics.fmean(r["motifs"] == 1 for r in held),
            "distinct_programs": len({r["program"] for r in held})}


def _share(passed: list) -> float | None:
    return statistics.fmean(passed) if passed else None


def arm_summary(rs: list[dict], blocks: int, curve_blocks: int, snapshots: int, novel: set[str]) -> dict:
    """Descriptive rows: Pass@1 per phase (seed values), curves, tools, reuse and transfer."""
    rate = lambda r, ph: statistics.fmean(x["passed"] for x in phase(r, ph))  # noqa: E731
    out = {ph: spread([rate(r, ph) for r in rs]) for ph in ("online", "heldout", "transfer")}
    solved = [[x for x in phase(r, "online") if x["solved_visible"]] for r in rs]
    used = [x for r in rs for ph in ("online", "heldout", "transfer") for x in phase(r, ph) if x["tools_used"]]
    n_used = sum(len(x["tools_used"]) for x in used)
    per_order = [o for r in rs for o in r["orders"]]
    out.update(
        seeds=sorted(r["seed"] for r in rs),
        curve=np.mean([seed_curve(r, curve_blocks) for r in rs], 0).tolist(),
        heldout_curve=np.mean([heldout_curve(r, snapshots) for r in rs], 0).tolist(),
        heldout_novel=_share([x["passed"] for r in rs for x in phase(r, "heldout") if x["task_id"] in novel]),
        heldout_repeat=_share([x["passed"] for r in rs for x in phase(r, "heldout") if x["task_id"] not in novel]),
        slope=spread([seed_slope(r) for r in rs]), drawdown=spread([seed_drawdown(r, blocks) for r in rs]),
        tools_created=spread([o["tools_created"] for o in per_order]),
        tools_active=spread([o["tools_active"] for o in per_order]),
        heldout_targets_in_memory=statistics.fmean(o["heldout_targets_in_memory"] for o in per_order),
        asset_count=np.mean([[x["active_tools"] for x in r["items"] if x["phase"] in ("init", "online")
                              and x["order"] == o] for r in rs for o in orders(r)], 0).tolist(),
        # share of online tasks solved (visible examples) with a program that calls a tool
        reuse_rate=statistics.fmean(sum(bool(x["tools_used"]) for x in s) / max(1, len(s)) for s in solved),
        # share of tool calls (all phases) whose tool was created by another category's task
        cross_category_share=(sum(x["tools_from_other_category"] for x in used) / n_used) if n_used else None,
        proposals={k: statistics.fmean(o["proposals"].get(k, 0) for o in per_order)
                   for k in ("kept", "duplicate", "fails its tests", "length")},
        demoted=statistics.fmean(sum(len(x["demoted"]) for x in r["items"]) / len(r["orders"]) for r in rs),
        by_category={c: statistics.fmean(statistics.fmean(x["passed"] for x in phase(r, "heldout") if x["category"] == c)
                                         for r in rs)
                     for c in sorted({x["category"] for x in phase(rs[0], "heldout")})})
    return out


def decide(runs: dict[str, list[dict]], aa: list[dict], calibration: dict, programs: dict[str, list[dict]],
           params: dict) -> dict:
    """`runs`: arm -> run records (metrics + items) on the main seeds, `aa`: the static arm's runs on
    the A/A seeds, `calibration`: the calibrate stage's metrics, `programs`: split -> the tasks'
    target programs (data stage), `params`: {analysis, runs}."""
    blocks, snaps = params["analysis"]["drawdown_blocks"], params["runs"]["heldout_snapshots"]
    ids = [r["task_id"] for r in programs["heldout"]]
    clusters = [r["program"] for r in programs["heldout"]]
    rep = repeats(programs)
    novel = [t for t in ids if t not in set(rep["repeated"])]
    novel_clusters = [c for t, c in zip(ids, clusters) if t in set(novel)]
    pair = lambda a, b: paired(runs[a], runs[b], f"{a} vs {b}")  # noqa: E731
    v1 = {name: heldout_diff(pair(a, b), ids, clusters) for name, (a, b) in PAIRS.items()}
    v1_novel = {name: heldout_diff(pair(a, b), novel, novel_clusters) if novel else
                unmeasured("every held-out task repeats a stream program") for name, (a, b) in PAIRS.items()}
    static = sorted(runs["static"], key=lambda r: r["seed"])
    full_static, full_asset = pair("full", "static"), pair("full", "asset")
    v2 = {"slope_full_minus_static": paired_diff([seed_slope(f) for f, _ in full_static],
                                                  [seed_slope(s) for _, s in full_static]),
          "full_slope": mean_ci([seed_slope(f) for f, _ in full_static]),
          "static_slope": mean_ci([seed_slope(s) for _, s in full_static]),
          "drawdown_full_minus_asset": {**paired_diff([seed_drawdown(f, blocks) for f, _ in full_asset],
                                                      [seed_drawdown(a, blocks) for _, a in full_asset]),
                                        "full": [seed_drawdown(f, blocks) for f, _ in full_asset],
                                        "asset": [seed_drawdown(a, blocks) for _, a in full_asset]},
          "static_drawdown": mean_ci([seed_drawdown(s, blocks) for s in static]),
          "heldout_curve_full_gain": paired_diff([heldout_curve(f, snaps)[-1] for f, _ in full_static],
                                                 [heldout_curve(f, snaps)[0] for f, _ in full_static]),
          "tools_added_online": mean_ci([tools_added_online(f) for f, _ in full_static])}
    if len(aa) != len(static):
        raise ValueError(f"the A/A control needs as many seeds as the static arm: {len(aa)} vs {len(static)}")
    aa = sorted(aa, key=lambda r: r["seed"])
    controls = {
        "seed_aa": seed_control(heldout_diff(list(zip(static, aa)), ids, clusters),
                                "static arm, main seeds minus A/A seeds: held-out Pass@1 (V1's effect code)"),
        "seed_aa_slope": seed_control(paired_diff([seed_slope(s) for s in static], [seed_slope(s) for s in aa]),
                                      "static arm, main seeds minus A/A seeds: online slope (V2's effect code)")}
    every = [r for rs in runs.values() for r in rs] + aa
    violations = sum(r["audit_violations"] for r in every)
    order = sorted(runs, key=lambda a: (ARMS.index(a) if a in ARMS else len(ARMS), a))
    regime = {"static_heldout": hierarchical([seed_items(s, ids) for s in static], clusters),
              "tool_use_asset": mean_ci([tool_use(r) for r in runs["asset"]]),
              "tool_use_full": mean_ci([tool_use(r) for r in runs["full"]])}
    return {"arms": {a: arm_summary(runs[a], blocks, params["analysis"]["curve_blocks"], snaps, set(novel))
                     for a in order},
            "calibration": {k: calibration[k] for k in ("budget", "static_pass", "static_pass_by_budget", "target",
                                                        "by_category", "by_depth", "deeper_than_search")},
            "heldout_tasks": len(ids), "online_tasks": len(online(static[0], orders(static[0])[0])),
            "orders": len(orders(static[0])), "seeds": [r["seed"] for r in static], "aa_seeds": [r["seed"] for r in aa],
            "repeats": {k: v for k, v in rep.items() if k != "repeated"},
            "v1": v1, "v1_novel": v1_novel, "v2": v2, "regime": regime, "controls": controls,
            "audit": {"clean": violations == 0, "violations": violations,
                      "examples": [v for r in every for v in r["audit_examples"]][:20]}}


def _pt(x) -> str:
    return "n/a" if x is None else f"{100 * x:+.1f}"


def _ci(ci) -> str:
    return "n/a" if ci[0] is None else f"[{_pt(ci[0])}, {_pt(ci[1])}]"


def report_tables(m: dict, params: dict) -> str:
    """Markdown: design choices, what the seeds vary, calibration, held-out repeats, V1 (all and novel
    held-out tasks), V2 (slopes, drawdowns, held-out curve), regime, controls, audit, per-arm table,
    held-out Pass@1 per category."""
    c, mem, arms, rep = m["calibration"], params["memory"], m["arms"], m["repeats"]
    grid, depths = sorted(c["static_pass_by_budget"], key=int), sorted(c["by_depth"], key=int)
    snaps, blocks = params["runs"]["heldout_snapshots"], params["analysis"]["drawdown_blocks"]
    lines = [
        "## Design choices where the spec is silent", "",
        f"- Programs: sequences of 1-{params['search']['max_len']} tokens (DSL functions or tools) applied left to "
        f"right; search budget {c['budget']} unique candidates per task, chosen by the calibration below.",
        f"- Experience Memory: smoothed bigram/unigram counts of what worked per category, tool tokens included "
        f"(alpha {mem['prior']['alpha']}, explore {mem['prior']['explore']}); failures shift the length prior and "
        "give partial credit.",
        f"- Asset Memory (every arm with assets): tools = named compositions of {mem['tool_min_len']}-"
        f"{mem['tool_max_len']} functions cut from verified solutions (the whole solution, and each part that "
        f"recurs in {mem['min_support']} of the memory's verified solutions), kept only if they pass tests from the "
        f"visible examples and behave unlike every primitive and active tool; at most {mem['tools_per_task']} "
        f"recruited per task, ranked by their wins in the task's category plus {mem['home_bonus']} for their home "
        f"category; demoted after {mem['demote_after']} fails below a {mem['demote_below']} win rate. Tools are "
        "created after a verified solution, not during recruitment (a declared deviation: before a task is solved "
        "no composition has tests from its examples to pass). In the full arm experience guides assets through "
        "the search (its prior weighs tool tokens) and so through the solutions tools are cut from.",
        f"- Protocol: per order, the first {mem['init_tasks']} tasks of the ordered stream initialise fresh memories "
        f"(not scored); {m['online_tasks']} online tasks; {m['heldout_tasks']} held-out tasks (stream categories) "
        f"solved by frozen memories at {snaps} evenly spaced points of the online stream (the last: its end); the "
        "transfer tasks (a category absent from the stream) by the final memories.",
        "- Expert agents (the paper's agent bank) are not modelled: Asset Memory holds tools only. The "
        "experience-only and asset-only arms are internal ablations (the paper's RQ1 style), not the external "
        "frameworks the paper compares with.", "",
        "## Seeds", "",
        f"The task set and the calibration are one job each. Every arm runs on seeds {m['seeds']}; each seed draws "
        f"{m['orders']} orders of the stream (orders are nested within seeds) and the search's random draws (per "
        "task, shared by the arms). A seed's value is its mean over its orders; intervals are over seeds (Student-t), "
        "and for held-out Pass@1 over seeds x held-out tasks (crossed; tasks with the same target program form one "
        f"cluster). The seed-only A/A control runs the static arm on seeds {m['aa_seeds']}.", "",
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
        "## Held-out tasks that repeat a stream program", "",
        f"{100 * rep['share']:.1f}% of the {rep['tasks']} held-out tasks have a target program (the same composition of "
        f"functions) that some stream task has; {100 * rep['single_motif_share']:.1f}% are a single motif; "
        f"{rep['distinct_programs']} distinct target programs. Their tests are fresh inputs, so a repeat is still a "
        "held-out task; V1 is shown on all held-out tasks (the checks) and on the novel ones.", "",
        "## V1: held-out Pass@1 differences (points)", "",
        "| comparison | held-out tasks | difference | 95% CI seeds x tasks | 95% CI tasks only | seeds | tasks (clusters) |",
        "|---|---|---|---|---|---|---|"]
    for subset, effects in (("all", m["v1"]), ("novel", m["v1_novel"])):
        for name, e in effects.items():
            lines.append(f"| {name.replace('_', ' ')} | {subset} | {_pt(e['value'])} | {_ci(e['ci'])} | "
                         f"{_ci(e.get('ci_items', [None, None]))} | {e['n']} | {e.get('n_items', 'n/a')} ({e.get('n_clusters', 'n/a')}) |")
    v2 = m["v2"]
    s, d = v2["slope_full_minus_static"], v2["drawdown_full_minus_asset"]
    lines += ["", "## V2: stability of the full arm's evolution", "",
              f"Online slope (least-squares, start to end of the stream), full minus static on the same orders: "
              f"{_pt(s['value'])} points, 95% CI {_ci(s['ci'])} ({s['n']} seeds); full {_pt(v2['full_slope']['value'])} "
              f"{_ci(v2['full_slope']['ci'])}, static (no memory: the stream's difficulty drift) "
              f"{_pt(v2['static_slope']['value'])} {_ci(v2['static_slope']['ci'])}.", "",
              f"Largest drawdown of the seed's online curve ({blocks} blocks of {m['online_tasks'] // blocks} tasks, pooled "
              f"over its {m['orders']} orders), full minus asset-only: {_pt(d['value'])} points, 95% CI {_ci(d['ci'])} "
              f"(full {', '.join(f'{100 * x:.0f}' for x in d['full'])}; asset-only "
              f"{', '.join(f'{100 * x:.0f}' for x in d['asset'])}). The static arm's drawdown, which is only noise and "
              f"difficulty: {_pt(v2['static_drawdown']['value'])} {_ci(v2['static_drawdown']['ci'])}.", "",
              f"Held-out curve (frozen memories, held-out Pass@1 %, mean over seeds and orders; snapshot k after "
              f"k/{snaps - 1} of the online stream); full arm's gain from the first snapshot to the last "
              f"{_pt(v2['heldout_curve_full_gain']['value'])} {_ci(v2['heldout_curve_full_gain']['ci'])}. Tools the full "
              f"arm adds during the online stream: {v2['tools_added_online']['value']:.1f} per order.", "",
              "| arm | " + " | ".join(f"snapshot {k}" for k in range(snaps)) + " |", "|---|" + "---|" * snaps]
    lines += [f"| {a} | " + " | ".join(f"{100 * v:.1f}" for v in x["heldout_curve"]) + " |" for a, x in arms.items()]
    r, ctrl, au = m["regime"], m["controls"], m["audit"]
    lines += ["", "## Regime, controls and the leak audit", "",
              f"- static arm's held-out Pass@1 {_pt(r['static_heldout']['value'])} {_ci(r['static_heldout']['ci'])}; "
              f"share of held-out tasks whose program calls a tool: asset-only {_pt(r['tool_use_asset']['value'])} "
              f"{_ci(r['tool_use_asset']['ci'])}, full {_pt(r['tool_use_full']['value'])} {_ci(r['tool_use_full']['ci'])}.",
              *[f"- control {k} ({x['what']}): {_pt(x['effect']['value'])} {_ci(x['effect']['ci'])}, "
                f"{'passed' if x['passed'] else 'FAILED'} ({x['rule']})" for k, x in ctrl.items()],
              f"- leak audit (every job, every order: provenance of every memory item, held-out target programs, "
              f"hidden and held-out values): {au['violations']} violations.",
              *[f"  - {v}" for v in au["examples"]], "",
              "## Arms (mean ± std over seeds)", "",
              "| arm | online Pass@1 | held-out | held-out, repeats / novel | transfer | slope | drawdown | "
              "tools created / active | held-out targets in memory | demoted | reuse rate | cross-category tool calls |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    cell = lambda x: f"{100 * x['mean']:.1f} ± {100 * x['std']:.1f}"  # noqa: E731
    for a, x in arms.items():
        cross = "n/a" if x["cross_category_share"] is None else f"{100 * x['cross_category_share']:.0f}%"
        rn = " / ".join("n/a" if v is None else f"{100 * v:.1f}" for v in (x["heldout_repeat"], x["heldout_novel"]))
        lines.append(f"| {a} | {cell(x['online'])} | {cell(x['heldout'])} | {rn} | {cell(x['transfer'])} | {cell(x['slope'])} | "
                     f"{cell(x['drawdown'])} | {x['tools_created']['mean']:.1f} / {x['tools_active']['mean']:.1f} | "
                     f"{x['heldout_targets_in_memory']:.1f} | {x['demoted']:.1f} | {100 * x['reuse_rate']:.0f}% | {cross} |")
    cats = list(arms["full"]["by_category"])
    lines += ["", "## Held-out Pass@1 per category (%, mean over seeds)", "",
              "| arm | " + " | ".join(cats) + " |", "|---|" + "---|" * len(cats)]
    lines += [f"| {a} | " + " | ".join(f"{100 * x['by_category'][k]:.0f}" for k in cats) + " |" for a, x in arms.items()]
    lines += ["", "Tool proposals per order (mean): " + "; ".join(
        f"{a}: " + ", ".join(f"{k} {v:.1f}" for k, v in x["proposals"].items()) for a, x in arms.items()
        if x["tools_created"]["mean"]), ""]
    return "\n".join(lines) + "\n"
