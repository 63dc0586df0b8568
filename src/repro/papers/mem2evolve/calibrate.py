"""Stage 2: calibrate the search budget on the static toolset (primitives only, uniform prior, no
memory) over the stream. The spec asks that the static toolset solve 30-50% of the tasks and that
some tasks need compositions deeper than the search reaches: one static search per task at the
largest budget records how many candidates it needed, which gives static Pass@1 at every budget of
the grid (the search is sequential and seeded per task, so a smaller budget stops on the same
candidate or fails). The budget is the largest of the grid whose static Pass@1 lies in the target
band; no arm's result is read."""
import collections
import random

from repro.core.io import atomic_write_json
from repro.core.stage import StageContext, main
from repro.data.programs import PRIMITIVES
from repro.papers.mem2evolve._tasks import Tasks
from repro.papers.mem2evolve.method import search


def run(ctx: StageContext) -> dict:
    s = ctx.params["search"]
    tasks = Tasks(ctx.inputs["data"])
    vocab = {p: (p,) for p in PRIMITIVES}
    grid, (lo, hi) = sorted(s["budget_grid"]), s["static_target"]
    rows = []
    for task in tasks.visible("stream"):
        traj = search(task, vocab, grid[-1], s["max_len"], random.Random(f"calibrate-{ctx.seed}-{task.task_id}"),
                      max_draws=s["max_draws"])
        rows.append({"task_id": task.task_id, **tasks.info[task.task_id], "needed": traj.evaluated if traj.solved else None,
                     "passed": tasks.judge(task.task_id, traj.expanded)})

    def rate(rs, b):
        return sum(r["passed"] and r["needed"] is not None and r["needed"] <= b for r in rs) / len(rs)

    by_budget = {str(b): rate(rows, b) for b in grid}
    inside = [b for b in grid if lo <= by_budget[str(b)] <= hi]
    if not inside:
        raise SystemExit(f"calibration: static Pass@1 over the budget grid {by_budget} never lies in [{lo}, {hi}]; "
                         "change the task mix or the grid")
    budget = inside[-1]
    group = lambda key: {str(k): {"tasks": len(v), "static_pass": rate(v, budget)}  # noqa: E731
                         for k, v in sorted(_by(rows, key).items())}
    atomic_write_json(ctx.out / "items.json", rows)
    return {"budget": budget, "static_pass_by_budget": by_budget, "static_pass": by_budget[str(budget)],
            "target": [lo, hi], "by_category": group("category"), "by_depth": group("depth"),
            "deeper_than_search": sum(r["depth"] > s["max_len"] for r in rows) / len(rows)}


def _by(rows: list[dict], key: str) -> dict:
    out = collections.defaultdict(list)
    for r in rows:
        out[r[key]].append(r)
    return out


if __name__ == "__main__":
    main(run)
