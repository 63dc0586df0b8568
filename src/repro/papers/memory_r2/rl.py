"""Stage 3: RL of the memory agent from the SFT warm start, one arm and one seed: GRPO over global
trajectory groups, optionally with LoGo's local re-rollout groups, a curriculum over dialogue
lengths, and shared or per-role parameters; then greedy test evaluation of the best-validation
checkpoint (per QA F1, memory failure, size and compression penalty).

Per step: n rollouts of each of P conversations (every extractor and manager turn sampled on the KV
cache) -> per-session rewards from the final memory -> [LoGo: local groups re-rolled from deep-copied
snapshots, rewarded right away] -> group advantages (one id per global (conversation, session) and per
local group; singletons per `rl.singleton`) -> every turn of a session gets its session's advantage
-> `epochs` PPO-clip epochs with a KL penalty to the SFT policy and an entropy bonus.
Curriculum: the steps split evenly over the stages' lengths (equal total updates); each stage starts
from the best-validation candidate so far. Equal selection: every arm validates at the same
`val_points` evenly spaced steps and is tested from the best of those and the SFT start, so no arm
gains from checkpoint selection alone. Records per job: the validation curve (with each conversation's
memory failure), how often the compression penalty was non-zero, equal-reward groups per kind, and
(LoGo arms) the credit diagnostic's (group, counterfactual value, advantage) triples.
"""
import copy
import random
import statistics
import time

import torch
from tqdm.auto import tqdm

from repro.core.io import atomic_write_json, read_json
from repro.core.stage import StageContext, main
from repro.papers.memory_r2 import method
from repro.papers.memory_r2._world import World, agent, evaluate, role_models, summary, unique
from repro.rl.grpo import group_advantages, group_stats, masked_mean, ppo_clip_loss
from repro.rl.rollout import concat, response_logprobs


def score_groups(traces: list, local_groups: list, n: int, reward: method.Reward, k: int) -> tuple:
    """Rewards and group ids of every (trace, session) slot; {(trace id, session): slot}."""
    rewards, gids, slot = [], [], {}
    sessions = len(traces[0].sessions)
    for i, t in enumerate(traces):
        for s, r in enumerate(method.global_rewards(t, reward, k)):
            slot[(id(t), s)] = len(rewards)
            rewards.append(r)
            gids.append((i // n) * sessions + s)
    base = (len(traces) // n) * sessions
    for j, group in enumerate(local_groups):
        for t in group:
            slot[(id(t), t.sessions[0])] = len(rewards)
            rewards.append(method.local_reward(t, reward, k))
            gids.append(base + j)
    return torch.tensor(rewards), torch.tensor(gids), slot


def role_batches(agent_, traces: list, slot: dict, adv: torch.Tensor) -> dict:
    """Per role: every sampled turn as one batch of rollouts, with its session's advantage."""
    row_adv = {}
    for t in traces:
        for role, call, row, s in t.samples:
            row_adv[(call, row)] = float(adv[slot[(id(t), s)]])
    out = {}
    for role in method.ROLES:
        calls = [(c, ro) for c, (r, ro) in enumerate(agent_.calls) if r == role]
        if calls:
            out[role] = (concat([ro for _, ro in calls]),
                         torch.tensor([row_adv[(c, i)] for c, ro in calls for i in range(len(ro.group_ids))]))
    return out


def credit_records(groups: list[tuple[list, int]], local: bool, slot: dict, rewards: torch.Tensor,
                   adv: torch.Tensor, reward: method.Reward, k: int, limit: int, rng: random.Random,
                   tag: str) -> tuple[list, int]:
    """[group, counterfactual value, advantage] of every memory-changing op in up to `limit` sampled
    groups whose rewards differ (a group of equal rewards assigns no credit at all), and how many of
    `groups` (traces, session) had equal rewards."""
    differ = []
    for j, (traces, s) in enumerate(groups):
        r = [float(rewards[slot[(id(t), s)]]) for t in traces]
        if max(r) - min(r) > 1e-12:
            differ.append(j)
    out = []
    for j in rng.sample(differ, min(limit, len(differ))):
        traces, s = groups[j]
        for t in traces:
            ops = [i for i, o in enumerate(t.ops) if o.session == s and o.kind in ("insert", "update", "delete")]
            a = float(adv[slot[(id(t), s)]])
            out += [[f"{tag}-{j}", v, a] for v in method.counterfactual_values(t, local, reward, k, ops)]
    return out, len(groups) - len(differ)


def validation_steps(steps: int, points: int, stages: int) -> list[int]:
    """The `points` evenly spaced steps every arm validates at; each curriculum stage ends on one."""
    if steps % points or points % stages:
        raise ValueError(f"rl.steps ({steps}) must be a multiple of rl.val_points ({points}), and val_points a "
                         f"multiple of the curriculum's {stages} stages: every arm selects from the same points")
    return [steps // points * (j + 1) for j in range(points)]


def run(ctx: StageContext) -> dict:
    from accelerate import Accelerator

    seed = int(ctx.wildcards["seed"])
    arm = ctx.params["arms"][ctx.wildcards["arm"]]
    ro_p, rl = ctx.params["rollout"], ctx.params["rl"]
    reward, k = method.Reward(**ctx.params["reward"]), ro_p["top_k"]
    world = World(ctx.inputs["data"])
    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    backbone = "shared" if arm["shared"] else "separate"
    models = role_models(ctx.inputs["sft"], arm["shared"])
    prepared = {id(m): accelerator.prepare(m) for m in unique(models)}
    models = {role: prepared[id(m)] for role, m in models.items()}
    refs = {id(m): copy.deepcopy(m).eval().requires_grad_(False) for m in unique(models)}  # the SFT policy
    params = [p for m in unique(models) for p in m.parameters()]
    opt = accelerator.prepare(torch.optim.AdamW(params, lr=rl["lr"], weight_decay=0.0))
    device = accelerator.device
    # separate streams: every arm of a seed draws the same training conversations, whatever its
    # local-group coins and diagnostic samples consume
    rng, local_rng, credit_rng = (random.Random(f"{seed}-{use}") for use in ("convs", "local", "credit"))
    gen = torch.Generator(device=device).manual_seed(seed)
    stages = arm.get("curriculum") or [ro_p["sessions"]]
    per_stage = rl["steps"] // len(stages)
    checkpoints = validation_steps(rl["steps"], rl["val_points"], len(stages))
    n = arm["group_size"]
    local = arm.get("local")
    # the SFT start is the first candidate of every arm (its greedy validation, from the SFT stage)
    sft_val = read_json(ctx.inputs["sft"] / "validation.json")[backbone]
    validation = [{"step": 0, "length": None, **val_point(sft_val)}]
    best = (validation[0]["f1"], 0, {id(m): copy.deepcopy(m.state_dict()) for m in unique(models)})
    history, credit = [], {"global": [], "local": []}
    start = time.perf_counter()
    step = 0
    for length in stages:
        for m in unique(models):  # each stage starts from the best candidate so far
            m.load_state_dict(best[2][id(m)])
        pool = world.convs(f"train_s{length}")
        for _ in tqdm(range(per_stage), desc=f"rl {ctx.wildcards['arm']} s{seed} len{length}", mininterval=5):
            convs = rng.sample(pool, ro_p["conversations_per_step"])
            for m in unique(models):
                m.eval()
            ag = agent(models, world, ctx.params)
            traces = method.rollout_conversations(ag, convs, n, ro_p["temperature"], gen)
            groups = (method.local_rerolls(ag, [traces[i:i + n] for i in range(0, len(traces), n)],
                                           local["p"], local["m"], local["temperature"], local_rng, gen)
                      if local else [])
            rewards, gids, slot = score_groups(traces, groups, n, reward, k)
            adv = group_advantages(rewards, gids, std_normalize=True, singleton=rl["singleton"])
            stats = group_stats(rewards, gids)
            all_traces = traces + [t for g in groups for t in g]
            batches = role_batches(ag, all_traces, slot, adv)
            ng = len(traces) * length  # global slots come first
            kinds = {"global": [(traces[i:i + n], s) for i in range(0, len(traces), n) for s in range(length)],
                     "local": [(g, g[0].sessions[0]) for g in groups]}
            equal = {}
            for kind, gs in kinds.items():
                records, equal[kind] = credit_records(
                    gs, kind == "local", slot, rewards, adv, reward, k,
                    rl["credit_groups"] if local and step % rl["credit_every"] == 0 else 0, credit_rng, f"{step}{kind[0]}")
                credit[kind] += records
            with torch.no_grad():
                ref_logp = {role: response_logprobs(refs[id(models[role])], b)[0] for role, (b, _) in batches.items()}
            for m in unique(models):
                m.train()
            for _ in range(rl["epochs"]):
                loss, clipped = 0.0, []
                for role, (b, a) in batches.items():
                    logp, ent = response_logprobs(models[role], b)
                    pg, info = ppo_clip_loss(logp, b.logprobs, a.to(device), b.response_mask, clip=rl["clip"],
                                             max_len=rl["loss_max_len"])
                    clipped.append(info["clip_fraction"])
                    kl = masked_mean(method.kl_k3(logp, ref_logp[role]), b.response_mask)
                    loss = loss + pg + rl["kl_coef"] * kl - rl["entropy_coef"] * masked_mean(ent, b.response_mask)
                opt.zero_grad(set_to_none=True)
                accelerator.backward(loss)
                accelerator.clip_grad_norm_(params, rl["grad_clip"])
                opt.step()
            penalties = {"global": [method.trace_penalty(t, reward) for t in traces],
                         "local": [method.trace_penalty(t, reward) for g in groups for t in g]}
            history.append({"step": step, "length": length, "reward_global": float(rewards[:ng].mean()),
                            "reward_local": float(rewards[ng:].mean()) if groups else None,
                            "groups": {kind: len(gs) for kind, gs in kinds.items()}, "equal_reward_groups": equal,
                            "penalty_nonzero": {kind: sum(p > 0 for p in ps) for kind, ps in penalties.items()},
                            "rollouts": {kind: len(ps) for kind, ps in penalties.items()},
                            "penalty_mean": statistics.fmean(penalties["global"]),
                            "session_rollouts": ng + sum(len(x) for x in groups),
                            "singletons": int((stats.size == 1).sum()),
                            "degenerate_fraction": float(stats.degenerate.float().mean()),
                            "clip_fraction_last_epoch": statistics.fmean(clipped),
                            "turns": {role: len(a) for role, (_, a) in batches.items()},
                            "memory_entries": statistics.fmean(len(t.memory.entries) for t in traces)})
            step += 1
            if step in checkpoints:
                validation.append({"step": step, "length": length,
                                   **val_point(evaluate(models, world, ctx.params, "val"))})
                if validation[-1]["f1"] > best[0]:
                    best = (validation[-1]["f1"], step, {id(m): copy.deepcopy(m.state_dict()) for m in unique(models)})
    for m in unique(models):  # the test reads the best candidate, the SFT start included
        m.load_state_dict(best[2][id(m)])
    train_s = time.perf_counter() - start
    records = evaluate(models, world, ctx.params, "test")
    atomic_write_json(ctx.out / "items.json", records)
    atomic_write_json(ctx.out / "history.json", history)
    atomic_write_json(ctx.out / "validation.json", validation)
    atomic_write_json(ctx.out / "credit.json", credit)
    total = lambda key, kind: sum(h[key][kind] for h in history)  # noqa: E731
    return {"arm": ctx.wildcards["arm"], "seed": seed, "test": summary(records),
            "train_seconds": train_s, "seconds_per_step": train_s / max(1, step), "updates": step * rl["epochs"],
            "selected_step": best[1], "validation_points": len(validation),
            "session_rollouts_per_step": statistics.fmean(h["session_rollouts"] for h in history),
            "singletons": sum(h["singletons"] for h in history),
            "local_groups_per_step": statistics.fmean(h["groups"]["local"] for h in history),
            "groups": {kind: total("groups", kind) for kind in ("global", "local")},
            "equal_reward_groups": {kind: total("equal_reward_groups", kind) for kind in ("global", "local")},
            "penalty_nonzero": {kind: total("penalty_nonzero", kind) / max(1, total("rollouts", kind))
                                for kind in ("global", "local")},
            "reward_first_quarter": statistics.fmean(h["reward_global"] for h in history[:max(1, step // 4)]),
            "reward_last_quarter": statistics.fmean(h["reward_global"] for h in history[-max(1, step // 4):]),
            "credit_records": {kind: len(r) for kind, r in credit.items()}}


def val_point(records: list[dict]) -> dict:
    """A validation point: mean F1, memory failure (mean and per conversation) and operations."""
    sm = summary(records)
    return {"f1": sm["f1"], "memory_failure": sm["memory_failure"], "failures": [r["memory_failure"] for r in records],
            "ops_per_conversation": sm["ops_per_conversation"]}


if __name__ == "__main__":
    main(run)
