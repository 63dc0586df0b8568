"""Stage 3: RL of the memory agent from the SFT warm start, one arm and one seed: GRPO over global
trajectory groups, optionally with LoGo's local re-rollout groups, a curriculum over dialogue
lengths, and shared or per-role parameters; then greedy test evaluation of the best-validation
checkpoint (per QA F1, memory failure and size).

Per step: n rollouts of each of P conversations (every extractor and manager turn sampled on the KV
cache) -> per-session rewards from the final memory -> [LoGo: local groups re-rolled from deep-copied
snapshots, rewarded right away] -> group advantages (one id per global (conversation, session) and per
local group; singletons per `rl.singleton`) -> every turn of a session gets its session's advantage
-> `epochs` PPO-clip epochs with a KL penalty to the SFT policy and an entropy bonus.
Curriculum: the steps split evenly over the stages' lengths (equal total updates); each stage starts
from the previous stage's best-validation checkpoint. Every arm validates every `val_every` steps and
is tested from its best-validation checkpoint, so no arm gains from checkpoint selection alone.
"""
import copy
import random
import statistics
import time

import numpy as np
import torch
from tqdm.auto import tqdm

from repro.core.io import atomic_write_json
from repro.core.stage import StageContext, main
from repro.papers.memory_r2 import method
from repro.papers.memory_r2._world import World, agent, evaluate, role_models, summary, unique
from repro.rl.grpo import group_advantages, group_stats, masked_mean, ppo_clip_loss
from repro.rl.rollout import concat, response_logprobs


def score_groups(traces: list, local_groups: list, n: int, lam: float, k: int) -> tuple:
    """Rewards and group ids of every (trace, session) slot; {(trace id, session): slot}."""
    rewards, gids, slot = [], [], {}
    sessions = len(traces[0].sessions)
    for i, t in enumerate(traces):
        for s, r in enumerate(method.global_rewards(t, lam, k)):
            slot[(id(t), s)] = len(rewards)
            rewards.append(r)
            gids.append((i // n) * sessions + s)
    base = (len(traces) // n) * sessions
    for j, group in enumerate(local_groups):
        for t in group:
            slot[(id(t), t.sessions[0])] = len(rewards)
            rewards.append(method.local_reward(t, lam, k))
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


def credit_pairs(traces: list, local: bool, slot: dict, adv: torch.Tensor, lam: float, k: int,
                 limit: int, rng: random.Random) -> list[tuple[float, float]]:
    """(counterfactual value, advantage) of up to `limit` memory-changing ops of these traces."""
    ops = [(t, i) for t in traces for i, o in enumerate(t.ops) if o.kind in ("insert", "update", "delete")]
    pairs = []
    for t, i in rng.sample(ops, min(limit, len(ops))):
        value = method.counterfactual_values(t, local, lam, k, [i])[0]
        pairs.append((value, float(adv[slot[(id(t), t.ops[i].session)]])))
    return pairs


def correlation(pairs: list[tuple[float, float]]) -> float | None:
    x, y = np.array(pairs, dtype=float).reshape(-1, 2).T
    if len(x) < 3 or x.std() == 0 or y.std() == 0:
        return None
    return float(np.corrcoef(x, y)[0, 1])


def run(ctx: StageContext) -> dict:
    from accelerate import Accelerator

    seed = int(ctx.wildcards["seed"])
    arm = ctx.params["arms"][ctx.wildcards["arm"]]
    ro_p, rl, rew = ctx.params["rollout"], ctx.params["rl"], ctx.params["reward"]
    lam, k = rew["lam"], ro_p["top_k"]
    world = World(ctx.inputs["data"])
    accelerator = Accelerator(cpu=not torch.cuda.is_available())
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
    n = arm["group_size"]
    local = arm.get("local")
    history, validation, credit = [], [], {"global": [], "local": []}
    start = time.perf_counter()
    step = 0
    for length in stages:
        pool = world.convs(f"train_s{length}")
        best = (-float("inf"), None)
        for _ in tqdm(range(per_stage), desc=f"rl {ctx.wildcards['arm']} s{seed} len{length}", mininterval=5):
            convs = rng.sample(pool, ro_p["conversations_per_step"])
            for m in unique(models):
                m.eval()
            ag = agent(models, world, ctx.params)
            traces = method.rollout_conversations(ag, convs, n, ro_p["temperature"], gen)
            groups = (method.local_rerolls(ag, [traces[i:i + n] for i in range(0, len(traces), n)],
                                           local["p"], local["m"], local["temperature"], local_rng, gen)
                      if local else [])
            rewards, gids, slot = score_groups(traces, groups, n, lam, k)
            adv = group_advantages(rewards, gids, std_normalize=True, singleton=rl["singleton"])
            stats = group_stats(rewards, gids)
            all_traces = traces + [t for g in groups for t in g]
            batches = role_batches(ag, all_traces, slot, adv)
            if local and step % rl["credit_every"] == 0:
                credit["global"] += credit_pairs(traces, False, slot, adv, lam, k, rl["credit_ops"], credit_rng)
                credit["local"] += credit_pairs([t for g in groups for t in g], True, slot, adv, lam, k,
                                                rl["credit_ops"], credit_rng)
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
            ng = len(traces) * length  # global slots come first
            history.append({"step": step, "length": length, "reward_global": float(rewards[:ng].mean()),
                            "reward_local": float(rewards[ng:].mean()) if groups else None,
                            "global_groups": ng // n, "local_groups": len(groups),
                            "session_rollouts": ng + sum(len(x) for x in groups),
                            "singletons": int((stats.size == 1).sum()),
                            "degenerate_fraction": float(stats.degenerate.float().mean()),
                            "clip_fraction_last_epoch": statistics.fmean(clipped),
                            "turns": {role: len(a) for role, (_, a) in batches.items()},
                            "memory_entries": statistics.fmean(len(t.memory.entries) for t in traces)})
            step += 1
            if step % rl["val_every"] == 0 or step % per_stage == 0:
                val = summary(evaluate(models, world, ctx.params, "val"))["f1"]
                validation.append({"step": step, "length": length, "f1": val})
                if val > best[0]:
                    best = (val, {id(m): copy.deepcopy(m.state_dict()) for m in unique(models)})
        for m in unique(models):  # the next stage (and the test) start from this stage's best
            m.load_state_dict(best[1][id(m)])
    train_s = time.perf_counter() - start
    records = evaluate(models, world, ctx.params, "test")
    atomic_write_json(ctx.out / "items.json", records)
    atomic_write_json(ctx.out / "history.json", history)
    atomic_write_json(ctx.out / "validation.json", validation)
    credit_corr = {kind: correlation(p) for kind, p in credit.items()} if local else None
    return {"arm": ctx.wildcards["arm"], "seed": seed, "test": summary(records),
            "train_seconds": train_s, "seconds_per_step": train_s / max(1, step), "updates": step * rl["epochs"],
            "session_rollouts_per_step": statistics.fmean(h["session_rollouts"] for h in history),
            "singletons": sum(h["singletons"] for h in history),
            "local_groups_per_step": statistics.fmean(h["local_groups"] for h in history),
            "reward_first_quarter": statistics.fmean(h["reward_global"] for h in history[:max(1, step // 4)]),
            "reward_last_quarter": statistics.fmean(h["reward_global"] for h in history[-max(1, step // 4):]),
            "best_validation": max(validation, key=lambda v: v["f1"]),
            "credit": {"correlation": credit_corr,
                       "ops": {kind: len(p) for kind, p in credit.items()}} if local else None}


if __name__ == "__main__":
    main(run)
