"""Render reports/<profile>/<paper>/report.md + .html from metrics files, and the index.

    python -m repro.report.render paper --paper P --profile X --summary DIR --stage DIR ... --out DIR
    python -m repro.report.render index --profile X --report DIR ... --out reports/X
"""
from __future__ import annotations

import argparse
import datetime as dt
import shutil
import time
from pathlib import Path

from repro.core import integrity
from repro.core.config import declared_metrics, load_paper
from repro.core.io import atomic_dir, atomic_write_json, atomic_write_text, read_json
from repro.report.verdicts import VERDICTS, check_declared, evaluate_claims, fmt_effect

# design.md's wall-clock budgets on its 2-core machine ("Profiles"): one paper's whole chain, all papers
CORES = 2
BUDGET_S = {"smoke": 60, "mini": 900}
PAPER_BUDGET_S = {("minireranker", "mini"): 1200}
ALL_BUDGET_S = {"mini": 7200}
SMOKE_BANNER = ("> **Profile `smoke`**: every stage runs for seconds on toy sizes to test the workflow. "
                "The numbers below are not meaningful and the verdicts say nothing about the paper.\n")
HOW_TO_READ = (
    "Each check compares an effect with the spec's threshold; the effect carries a 95% interval over what "
    "varies, by a method calibrated to cover 95% (Student-t over seeds; seeds x shared test items crossed; "
    "dependent items as clusters; timing pairs by a sign-test interval widened by the job's A/A control; "
    "`by design` = fixed by configuration, measured from the run). **reproduced**: the whole interval "
    "satisfies the check; **not reproduced**: the whole interval violates it, also at Holm's adjusted level "
    "when a claim has several checks; **inconclusive**: the interval straddles the threshold (the reason says "
    "how much narrower it would have to be), there is one sample only, the claim's regime was not reached "
    "(the toy cannot do the task, or the mechanism never acts: the effect is still shown), one of its "
    "controls failed, or the analysis could not measure the effect in this run (it says why); "
    "**not checkable**: the params say in advance, with a reason, that this scale cannot decide it. The forest "
    "plot draws every check on its own scale, threshold at 0 and the claim's side to the right; a hollow "
    "marker means the claim's regime was not reached.")


def to_html(markdown_text: str, title: str) -> str:
    import markdown

    body = markdown.markdown(markdown_text, extensions=["tables", "fenced_code"])
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title>"
            "<style>body{font-family:sans-serif;max-width:70em;margin:2em auto;padding:0 1em}"
            "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.2em .5em}"
            "img{max-width:100%}</style></head><body>" + body + "</body></html>\n")


def _cell(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def verdict_cell(v: dict) -> str:
    return f"**{v['verdict']}**" + (f" ({v['basis']})" if v.get("basis") and v["verdict"] != "inconclusive" else "")


def regime_lines(v: dict) -> list[str]:
    if v["regime"] == "none":
        return [f"Regime: none needed ({v['regime_none']}).", ""]
    lines = [f"Regime: **{v['regime']}**.", "", "| regime check | effect (95% CI, n) | threshold | holds | reason |",
             "|---|---|---|---|---|"]
    lines += [f"| {_cell(c['says'])} | {_cell(fmt_effect(c['effect']))} | {c['op']} {c['threshold']} | "
              f"{'yes' if c['verdict'] == 'reproduced' else '**no**'} | {_cell(c['reason'])} |" for c in v["regime_checks"]]
    return lines + [""]


def claim_sections(verdicts: list[dict]) -> list[str]:
    lines = ["## Claims", "", "| id | paper's claim | published | regime | verdict |", "|---|---|---|---|---|"]
    lines += [f"| {v['id']} | {_cell(v['statement'])} | {_cell(v['published'])} | {v['regime']} | {verdict_cell(v)} |"
              for v in verdicts]
    lines.append("")
    for v in verdicts:
        lines += [f"### {v['id']}: {v['verdict']}", ""]
        if v.get("reason"):
            lines += [f"Why: {v['reason']}. The checks below show the effects as measured.", ""]
        if v.get("deviation"):
            lines += [f"Deviation from the spec: {v['deviation']}", ""]
        lines += regime_lines(v)
        if v.get("controls"):
            lines += [f"Controls this claim depends on: {', '.join(v['controls'])} (see Controls).", ""]
        lines += ["| check (spec) | effect (95% CI, n) | threshold | verdict | reason |", "|---|---|---|---|---|"]
        for c in v["checks"]:
            lines.append(f"| {_cell(c['says'])} | {_cell(fmt_effect(c['effect']))} | {c['op']} {c['threshold']} | "
                         f"**{c['verdict']}** | {_cell(c['reason'])} |")
        lines.append("")
    return lines


def controls_section(controls: dict) -> list[str]:
    """Every control the analysis ran: timing A/A (baseline against an identical copy) and seed A/A
    (the baseline arm on disjoint seeds against itself), with its interval and whether it passed."""
    lines = ["## Controls", ""]
    if not controls:
        return lines + ["This paper's analysis runs no control (no timing job, no comparison of trained arms).", ""]
    lines += ["| control | kind | what | effect (95% CI, n) | rule | passed |", "|---|---|---|---|---|---|"]
    lines += [f"| {name} | {c['kind']} | {_cell(c['what'])} | {_cell(fmt_effect(c['effect']))} | {_cell(c['rule'])} | "
              f"{'yes' if c['passed'] else '**no**'} |" for name, c in sorted(controls.items())]
    return lines + ["", "A failed seed A/A makes the claims that name it inconclusive. A timing A/A does not gate: "
                    "every timing effect of its job is judged on its interval widened by the factor the A/A interval "
                    "leaves 1 by.", ""]


def jobs_section(stages: list[Path], root: Path, paper: str, profile: str) -> tuple[list[str], dict]:
    """The jobs table, the chain's span against its budget, and its compute: core-seconds (wall x the
    threads Snakemake reserved, plus each process's single-threaded start-up), the floor no schedule on
    the design's cores can beat. Returns the lines and that compute, which the index sums."""
    lines = ["## Jobs and budget", "", "| job | wall (s) | start-up (s) | threads | params hash |",
             "|---|---|---|---|---|"]
    starts, ends, core_s, startup_s = [], [], 0.0, 0.0
    for stage in stages:
        p = read_json(stage / "metrics.json")["provenance"]
        end = dt.datetime.fromisoformat(p["finished_at"])
        starts.append(end - dt.timedelta(seconds=p["wall_s"]))
        ends.append(end)
        startup = p.get("startup_s")
        core_s += p["wall_s"] * p["threads"] + (startup or 0.0)
        startup_s += startup or 0.0
        lines.append(f"| {stage.relative_to(root)} | {p['wall_s']:.1f} | "
                     f"{'n/a' if startup is None else f'{startup:.1f}'} | {p['threads']} | {p['params_hash']} |")
    span = (max(ends) - min(starts)).total_seconds()
    budget = PAPER_BUDGET_S.get((paper, profile), BUDGET_S.get(profile))
    verdict = "" if budget is None else f" (budget {budget} s: {'within' if span <= budget else 'OVER'})"
    compute = {"jobs": len(stages), "core_s": round(core_s, 1), "startup_s": round(startup_s, 1)}
    return lines + ["", f"Chain wall-clock, first job start to last job end of the latest runs (job start-up "
                    f"and Snakemake scheduling excluded): {span:.0f} s{verdict}. The budget is for this "
                    "paper's chain run alone on 2 cores; when the whole DAG runs, other papers' jobs share "
                    "the cores and stretch this span.", "",
                    f"Compute: {len(stages)} job{'s' * (len(stages) != 1)}, {core_s:.0f} core-seconds (wall x threads, plus "
                    f"{startup_s:.0f} s of process start-up), so on {CORES} cores no schedule runs them in less "
                    f"than {core_s / CORES:.0f} s; the index sums this over the papers.", ""], compute


def replication_banner(seed_offset: int) -> list[str]:
    if not seed_offset:
        return []
    return [f"> **Replication**: every training seed shifted by +{seed_offset} (a disjoint seed set; same data, "
            "same test items). `python -m repro.report.compare` sets its verdicts beside the reproduction's.", ""]


def paper_report(paper: str, profile: str, summary: Path, stages: list[Path], out: Path,
                 parent_hash: str | None = None, seed_offset: int = 0) -> None:
    from repro.report.figures import forest_rows, forest

    params = load_paper(paper)
    for folder in {summary, *stages}:  # what the report reads is what the jobs wrote
        integrity.verify(folder)
    metrics_file = read_json(summary / "metrics.json")
    check_declared(metrics_file["metrics"], declared_metrics(paper))
    verdicts = evaluate_claims(params["claims"], metrics_file["metrics"])
    prov = metrics_file["provenance"]
    lines = [f"# {paper}: claims vs. measurements (profile `{profile}`)", ""]
    if profile == "smoke":
        lines += [SMOKE_BANNER]
    lines += replication_banner(seed_offset)
    lines += [f"Generated {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC from commit `{prov['git_commit'][:10]}`"
              f"{' (dirty tree)' if prov['git_dirty'] else ''}, params hash `{prov['params_hash']}`, "
              f"seed {prov['seed']}, device {prov['device']}.", "", HOW_TO_READ, ""]
    lines += claim_sections(verdicts)
    lines += controls_section(metrics_file["metrics"].get("controls", {}))
    with atomic_dir(out) as scratch:
        forest(forest_rows({paper: verdicts}), scratch / "forest.png", f"{paper} ({profile})")
        lines += ["## Forest plot", "", "![forest](forest.png)", ""]
        tables = summary / "tables.md"
        if tables.exists():
            lines += [tables.read_text(), ""]
        figures = sorted(summary.glob("*.png"))
        if figures:
            lines += ["## Figures", ""]
        for fig in figures:
            shutil.copy(fig, scratch / fig.name)
            lines += [f"![{fig.stem}]({fig.name})", ""]
        jobs, compute = jobs_section(stages, summary.parent, paper, profile)
        lines += jobs
        text = "\n".join(lines)
        atomic_write_text(scratch / "report.md", text)
        atomic_write_text(scratch / "report.html", to_html(text, f"{paper} ({profile})"))
        atomic_write_json(scratch / "verdicts.json", {"paper": paper, "profile": profile, "claims": verdicts,
                                                      "controls": metrics_file["metrics"].get("controls", {}),
                                                      "compute": compute})
    if parent_hash:
        track_report(paper, profile, parent_hash, verdicts, out)


def track_report(paper: str, profile: str, parent_hash: str, verdicts: list[dict], out: Path) -> None:
    """The parent MLflow run gets every check's effect, a verdict tag per claim and the report."""
    from repro.core.mlqueue import enqueue_report

    metrics, tags = {}, {}
    for v in verdicts:
        tags[f"verdict.{v['id']}"] = v["verdict"]
        tags[f"regime.{v['id']}"] = v["regime"]
        for i, c in enumerate(v["checks"]):
            e = c["effect"]
            key = f"{v['id']}.{i}.{c['metric']}"
            if isinstance(e["value"], (int, float)) and not isinstance(e["value"], bool):
                metrics[key] = {"value": e["value"], "ci_lo": e["ci"][0], "ci_hi": e["ci"][1]}
    enqueue_report(paper=paper, profile=profile, parent_hash=parent_hash, metrics=metrics, tags=tags,
                   artifacts=[out / n for n in ("report.md", "report.html", "forest.png", "verdicts.json")],
                   end=time.time())


def index(profile: str, reports: list[Path], out: Path, seed_offset: int = 0) -> None:
    from repro.report.figures import forest_rows, forest

    lines = [f"# Reproduction index (profile `{profile}`)", ""]
    if profile == "smoke":
        lines += [SMOKE_BANNER]
    lines += replication_banner(seed_offset)
    lines += [HOW_TO_READ, "", "| paper | " + " | ".join(VERDICTS) + " | regime not reached | seed A/A failed (gates) "
              "| timing A/A outside its band (widens) | claims |", "|---|" + "---|" * (len(VERDICTS) + 4)]
    by_paper, computes = {}, []
    for rep in reports:
        v = read_json(rep / "verdicts.json")
        by_paper[v["paper"]] = v["claims"]
        computes.append(v["compute"])
        counts = [sum(c["verdict"] == verdict for c in v["claims"]) for verdict in VERDICTS]
        regime = sum(c["regime"] == "not reached" for c in v["claims"])
        kinds = {k: [c for c in v.get("controls", {}).values() if c["kind"] == k] for k in ("seed A/A", "timing A/A")}
        failed = [f"{sum(not c['passed'] for c in cs)} of {len(cs)}" if cs else "-" for cs in kinds.values()]
        ids = ", ".join(f"{c['id']}: {c['verdict']}" + (" (regime not reached)" if c["regime"] == "not reached" else "")
                        for c in v["claims"])
        lines.append(f"| [{v['paper']}]({rep.name}/report.md) | " + " | ".join(map(str, counts))
                     + f" | {regime} | {' | '.join(failed)} | {ids} |")
    totals = [sum(c["verdict"] == verdict for claims in by_paper.values() for c in claims) for verdict in VERDICTS]
    lines.append("| **all** | " + " | ".join(map(str, totals)) + " | "
                 f"{sum(c['regime'] == 'not reached' for claims in by_paper.values() for c in claims)} | | | |")
    lines += ["", compute_line(computes, profile), "", "![every check of every paper](forest.png)", ""]
    text = "\n".join(lines)
    out.mkdir(parents=True, exist_ok=True)
    forest(forest_rows(by_paper), out / "forest.png", f"all papers ({profile})")
    atomic_write_text(out / "index.md", text)
    atomic_write_text(out / "index.html", to_html(text.replace(".md)", ".html)"), f"index ({profile})"))


def compute_line(computes: list[dict], profile: str) -> str:
    """All papers' compute against the all-papers budget: the papers' chains share the cores when the whole
    DAG runs, so their core-seconds over the cores bound its wall-clock from below."""
    core_s = sum(c["core_s"] for c in computes)
    floor = core_s / CORES
    budget = ALL_BUDGET_S.get(profile)
    verdict = "" if budget is None else f" (budget for all papers {budget / 60:.0f} min: {'within' if floor <= budget else 'OVER'})"
    return (f"Compute of the latest runs: {sum(c['jobs'] for c in computes)} jobs, {core_s:.0f} core-seconds "
            f"({sum(c['startup_s'] for c in computes):.0f} of them process start-up): the whole DAG takes at "
            f"least {floor / 60:.0f} min on {CORES} cores however it is scheduled{verdict}. Unlike the chains' "
            "spans, this holds when only some jobs were re-run.")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("paper")
    p.add_argument("--paper", required=True)
    p.add_argument("--profile", required=True)
    p.add_argument("--summary", required=True, type=Path)
    p.add_argument("--stage", action="append", default=[], type=Path)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--parent-hash", help="the MLflow parent run that gets the verdicts (omit: no tracking)")
    p.add_argument("--seed-offset", type=int, default=0)
    i = sub.add_parser("index")
    i.add_argument("--profile", required=True)
    i.add_argument("--report", action="append", default=[], type=Path)
    i.add_argument("--out", required=True, type=Path)
    i.add_argument("--seed-offset", type=int, default=0)
    args = parser.parse_args(argv)
    if args.command == "paper":
        paper_report(args.paper, args.profile, args.summary, args.stage, args.out, args.parent_hash, args.seed_offset)
    else:
        index(args.profile, args.report, args.out, args.seed_offset)


if __name__ == "__main__":
    main()
