"""Stage 3: one arm on one task order and seed. The first `init_tasks` of the ordered stream
initialise the memories (not scored), the rest is processed online (solve, Pass@1 by the judge, then
the backward pass, which never sees the judge's verdict), and the held-out and transfer tasks are
solved with frozen memories. Ends with the leak audit: a memory that holds anything the visible
examples do not justify stops the job."""
import random

from repro.core.io import atomic_write_json, read_metrics
from repro.core.stage import StageContext, main
from repro.data.programs import PRIMITIVES
from repro.papers.mem2evolve._tasks import Tasks
from repro.papers.mem2evolve.method import Agent, audit


def run(ctx: StageContext) -> dict:
    name, order, seed = ctx.wildcards["arm"], int(ctx.wildcards["order"]), int(ctx.wildcards["seed"])
    arm, mem, sp = ctx.params["arms"][name], ctx.params["memory"], ctx.params["search"]
    tasks = Tasks(ctx.inputs["data"])
    budget = read_metrics(ctx.inputs["calibrate"])["budget"]
    bias_fn = None
    if ctx.params["proposer"]:  # the LLM backbone ranks the DSL's functions per task (`paper`)
        from repro.papers.mem2evolve._llm import LLMProposer

        bias_fn = LLMProposer(ctx.params["proposer"])
    agent = Agent(arm["experience"], arm["assets"], sp, mem, bias_fn)
    stream = tasks.visible("stream")
    random.Random(f"order-{order}").shuffle(stream)
    phases = [("init", stream[:mem["init_tasks"]]), ("online", stream[mem["init_tasks"]:]),
              ("heldout", tasks.visible("heldout")), ("transfer", tasks.visible("transfer"))]
    records = []
    for phase, seq in phases:
        for pos, task in enumerate(seq):
            # common random numbers: every arm draws from the same stream for a given task, order and seed
            traj, recruited = agent.solve(task, budget, random.Random(f"{seed}-{order}-{task.task_id}"))
            passed = tasks.judge(task.task_id, traj.expanded)
            update = agent.learn(task, traj) if phase in ("init", "online") else {"kept": [], "demoted": []}
            used = [t for t in traj.program if t not in PRIMITIVES]
            records.append({
                "phase": phase, "position": pos, "task_id": task.task_id, **tasks.info[task.task_id],
                "passed": passed, "solved_visible": traj.solved, "evaluated": traj.evaluated,
                "program": traj.program, "recruited": len(recruited), "tools_used": used,
                "tools_from_other_category": sum(agent.assets.tools[t].category != task.category for t in used),
                "kept": update["kept"], "demoted": update["demoted"],
                "active_tools": len(agent.assets.active()) if agent.assets else 0})
    violations = audit(agent.experience, agent.assets, tasks.for_audit())
    if violations:
        raise SystemExit("leak audit failed:\n" + "\n".join(violations[:20]))
    atomic_write_json(ctx.out / "items.json", records)
    atomic_write_json(ctx.out / "memory.json", {
        "tools": [{**vars(t), "body": list(t.body)} for t in agent.assets.tools.values()] if agent.assets else [],
        "proposals": dict(agent.assets.log) if agent.assets else {},
        "experience_entries": len(agent.experience.entries) if agent.experience else 0})
    rate = lambda ph: (sum(r["passed"] for r in records if r["phase"] == ph) /  # noqa: E731
                       max(1, sum(r["phase"] == ph for r in records)))
    return {"arm": name, "order": order, "seed": seed, "budget": budget,
            **{f"{ph}_pass": rate(ph) for ph in ("online", "heldout", "transfer")},
            "tools_created": len(agent.assets.tools) if agent.assets else 0,
            "tools_active": len(agent.assets.active()) if agent.assets else 0,
            "proposals": dict(agent.assets.log) if agent.assets else {},
            "experience_entries": len(agent.experience.entries) if agent.experience else 0,
            "audit_violations": 0}


if __name__ == "__main__":
    main(run)
