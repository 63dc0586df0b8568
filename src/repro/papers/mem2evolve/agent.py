"""Stage 3: one arm on one seed, over the seed's task orders (orders are nested within seeds: the seed
draws each order's permutation of the stream and the search's random draws). Per order: the first
`init_tasks` of the ordered stream initialise fresh memories (not scored), the rest is processed
online (solve, Pass@1 by the judge, then the backward pass, which never sees the judge's verdict);
frozen snapshots of the memories solve the held-out tasks at `heldout_snapshots` evenly spaced points
of the online stream (the held-out curve; the last is the end of the stream), and the final memories
solve the transfer tasks. Each order ends with the leak audit, whose violations go into the metrics
(the analysis makes every claim's regime fail on any)."""
import random

from repro.core.io import atomic_write_json, read_metrics
from repro.core.stage import StageContext, main
from repro.data.programs import PRIMITIVES
from repro.papers.mem2evolve._tasks import Tasks
from repro.papers.mem2evolve.method import Agent, audit, targets_in_memory


def snapshot_points(online: int, snapshots: int) -> list[int]:
    """Online positions (tasks processed) at which the held-out set is solved with frozen memories:
    evenly spaced from the end of initialisation (0) to the end of the stream (`online`)."""
    return [round(k * online / (snapshots - 1)) for k in range(snapshots)]


def run_order(agent: Agent, tasks: Tasks, order: int, seed: int, budget: int, init: int, snapshots: int) -> list[dict]:
    stream = tasks.visible("stream")
    random.Random(f"order-{seed}-{order}").shuffle(stream)
    online, heldout = stream[init:], tasks.visible("heldout")
    points = snapshot_points(len(online), snapshots)
    if agent.experience is None and agent.assets is None:  # no memory: every snapshot is the same
        points = [None] * (snapshots - 1) + [len(online)]
    records = []

    def solve(phase: str, pos: int, task, learn: bool) -> None:
        # common random numbers: every arm draws from the same stream for a given task, order and seed
        traj, recruited = agent.solve(task, budget, random.Random(f"{seed}-{order}-{task.task_id}"))
        update = agent.learn(task, traj) if learn else {"kept": [], "demoted": []}
        used = [t for t in traj.program if t not in PRIMITIVES]
        records.append({
            "order": order, "phase": phase, "position": pos, "task_id": task.task_id, **tasks.info[task.task_id],
            "passed": tasks.judge(task.task_id, traj.expanded), "solved_visible": traj.solved,
            "evaluated": traj.evaluated, "program": traj.program, "recruited": len(recruited), "tools_used": used,
            "tools_from_other_category": sum(agent.assets.tools[t].category != task.category for t in used),
            "kept": update["kept"], "demoted": update["demoted"],
            "active_tools": len(agent.assets.active()) if agent.assets else 0})

    for pos, task in enumerate(stream[:init]):
        solve("init", pos, task, True)
    for pos in range(len(online) + 1):
        if pos in points:  # frozen memories: solving never changes them
            k = points.index(pos)
            for i, task in enumerate(heldout):
                solve("heldout" if k == snapshots - 1 else f"snapshot{k}", i, task, False)
        if pos < len(online):
            solve("online", pos, online[pos], True)
    for pos, task in enumerate(tasks.visible("transfer")):
        solve("transfer", pos, task, False)
    return records


def run(ctx: StageContext) -> dict:
    name, seed = ctx.wildcards["arm"], int(ctx.wildcards["seed"])
    arm, mem, sp, runs = ctx.params["arms"][name], ctx.params["memory"], ctx.params["search"], ctx.params["runs"]
    tasks = Tasks(ctx.inputs["data"])
    budget = read_metrics(ctx.inputs["calibrate"])["budget"]
    bias_fn = None
    if ctx.params["proposer"]:  # the LLM backbone ranks the DSL's functions per task (`paper`)
        from repro.papers.mem2evolve._llm import LLMProposer

        bias_fn = LLMProposer(ctx.params["proposer"])
    records, per_order, violations, truth = [], [], [], tasks.for_audit()
    for order in range(runs["orders"]):
        agent = Agent(arm["experience"], arm["assets"], sp, mem, bias_fn)
        rs = run_order(agent, tasks, order, seed, budget, mem["init_tasks"], runs["heldout_snapshots"])
        found = audit(agent.experience, agent.assets, truth)
        violations += [f"order {order}: {v}" for v in found]
        rate = lambda ph: sum(r["passed"] for r in rs if r["phase"] == ph) / max(1, sum(r["phase"] == ph for r in rs))  # noqa: E731
        per_order.append({
            "order": order, **{f"{ph}_pass": rate(ph) for ph in ("online", "heldout", "transfer")},
            "tools_created": len(agent.assets.tools) if agent.assets else 0,
            "tools_active": len(agent.assets.active()) if agent.assets else 0,
            "proposals": dict(agent.assets.log) if agent.assets else {},
            "experience_entries": len(agent.experience.entries) if agent.experience else 0,
            "heldout_targets_in_memory": targets_in_memory(agent.experience, agent.assets, truth),
            "audit_violations": len(found)})
        records += rs
    atomic_write_json(ctx.out / "items.json", records)
    return {"arm": name, "seed": seed, "budget": budget, "orders": per_order,
            "audit_violations": len(violations), "audit_examples": violations[:20]}


if __name__ == "__main__":
    main(run)
