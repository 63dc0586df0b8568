"""Stage 3: RL post-training of the SFT policy, one arm and one seed: GRPO, optionally with an
EchoClip auxiliary loss (or one of its ablations); then greedy ID/OOD correctness per test prompt, or
per validation prompt for an arm with `evaluate_on: validation` (a design sweep never reads test).

Per step: G rollouts of each of P prompts on the KV cache -> verifier rewards -> group advantages
(degenerate groups give zeros) -> PPO-clip loss (+ entropy bonus) -> for all-success groups, the clip
NLL weighted by beta. The policy-gradient norm is that of the PPO-clip term alone.

An arm with `dynamic_sampling` is the second RLVR method (DAPO-style): it samples `oversample` x P
prompts and trains the policy loss on the first P groups that are not degenerate. DAPO re-samples
until P are found; one oversampled batch bounds the cost (fewer than P are used when it falls short).
EchoClip still reads the all-success groups the filter drops.
"""
import random
import time

import torch
from tqdm.auto import tqdm

from repro.core.io import atomic_write_json
from repro.core.seeding import seed_everything
from repro.core.stage import StageContext, main
from repro.models.causal_lm import load_checkpoint
from repro.papers.echorl import method
from repro.papers.echorl._task import Task
from repro.rl.grpo import group_advantages, group_stats, informative_groups, masked_mean, ppo_clip_loss
from repro.rl.rollout import response_logprobs


def grad_norm(params) -> float:
    return float(torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in params if p.grad is not None])))


def run(ctx: StageContext) -> dict:
    from accelerate import Accelerator

    seed = int(ctx.wildcards["seed"])
    seed_everything(seed, ctx.threads)
    arm = ctx.params["arms"][ctx.wildcards["arm"]]
    ro_p, rl, ev = ctx.params["rollout"], ctx.params["rl"], ctx.params["evaluate"]
    task = Task(ctx.inputs["data"])
    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    model = load_checkpoint(ctx.inputs["sft"] / "model")
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=rl["lr"], weight_decay=0.0)
    model, opt = accelerator.prepare(model, opt)
    device = accelerator.device
    is_delim = task.is_delim.to(device)
    train = task.splits["train"]
    rng, gen = random.Random(seed), torch.Generator(device=device).manual_seed(seed)
    clip_rng = random.Random(seed + 1)
    dynamic = "dynamic_sampling" in arm
    oversample = arm["dynamic_sampling"]["oversample"] if dynamic else 1
    on = arm.get("evaluate_on", "test")
    evaluated = {split: f"{split}_{'val' if on == 'validation' else 'test'}" for split in ("id", "ood")}
    missing = [name for name in evaluated.values() if name not in task.splits]
    if missing:
        raise ValueError(f"arm {ctx.wildcards['arm']!r} (evaluate_on: {on}) needs splits {missing}; "
                         "params data.source.val_prompts (generated) or splits.id_val/ood_val (hub) makes them")
    history = []
    start = time.perf_counter()
    for step in tqdm(range(rl["steps"]), desc=f"rl {ctx.wildcards['arm']} s{seed}", mininterval=5):
        rows = train[rng.sample(range(len(train)), ro_p["prompts_per_step"] * oversample)]
        model.eval()
        ro = task.rollouts(model, rows, group_size=ro_p["group_size"], max_new_tokens=ro_p["max_new_tokens"],
                           temperature=ro_p["temperature"], generator=gen)
        rewards = task.rewards(ro, rows["answer"]).to(device)
        stats = group_stats(rewards, ro.group_ids)
        success = stats.all_equal_to(1.0)
        sampled = {"reward": float(rewards.mean()), "degenerate_fraction": float(stats.degenerate.float().mean()),
                   "all_success_fraction": float(success.float().mean()),
                   "all_fail_fraction": float(stats.all_equal_to(0.0).float().mean())}
        if dynamic:
            kept = informative_groups(stats, ro_p["prompts_per_step"])
            groups = torch.cat([kept, torch.nonzero(success).flatten()]) if arm["clip"] != "none" else kept
            if len(groups) == 0:  # every group failed: a step without gradient (DAPO would sample again)
                groups = torch.arange(len(success), device=device)
            ro, idx = ro.select_groups(groups)
            rewards, success = rewards[idx], success[groups]
            pg_rows, policy_groups = ro.group_ids < len(kept), len(kept)
        else:
            pg_rows, policy_groups = None, len(stats.size)
        adv = group_advantages(rewards, ro.group_ids, std_normalize=rl["std_normalize"])
        model.train()
        logp, ent = response_logprobs(model, ro, temperature=ro_p["temperature"])
        pg_loss, info = ppo_clip_loss(logp, ro.logprobs, adv, ro.response_mask, clip=rl["clip"],
                                      max_len=rl["loss_max_len"], rows=pg_rows)
        opt.zero_grad(set_to_none=True)
        accelerator.backward(pg_loss, retain_graph=True)
        pg_norm = grad_norm(params)
        policy_tokens = ro.response_mask if pg_rows is None else ro.response_mask & pg_rows[:, None]
        extra = -rl["entropy_coef"] * masked_mean(ent, policy_tokens)
        clips = []
        if arm["clip"] != "none":
            clip_mask, clips = method.echo_clips(ro, rewards, success, is_delim, how=arm["clip"],
                                                 rollout_choice=arm["rollout_choice"], rng=clip_rng)
            extra = extra + arm["beta"] * method.clip_nll(logp, clip_mask)
        accelerator.backward(extra)
        accelerator.clip_grad_norm_(params, rl["grad_clip"])
        opt.step()
        history.append({
            "step": step, **sampled, "groups": len(stats.size), "policy_groups": policy_groups,
            "pg_norm": pg_norm, "clip_fraction": info["clip_fraction"],
            "entropy": float(masked_mean(ent.detach(), policy_tokens)),
            "response_tokens": float(ro.response_mask.sum(-1).float().mean()),
            "clips": len(clips), "clipped_groups": len({int(ro.group_ids[c["rollout"]]) for c in clips}),
            "clip_end_relative": (sum((c["end_step"] + 1) / c["steps"] for c in clips) / len(clips)
                                  if clips else None)})
    train_s = time.perf_counter() - start
    model = accelerator.unwrap_model(model).eval()
    # per test prompt, so the analysis pairs arms on the same seed and the same prompts
    items = {split: {"prompt": list(task.splits[name]["prompt"]),
                     "correct": task.correct(model, task.splits[name], ev["batch_size"], ev["max_new_tokens"])}
             for split, name in evaluated.items()}
    acc = {split: sum(v["correct"]) / len(v["correct"]) for split, v in items.items()}
    atomic_write_json(ctx.out / "history.json", history)
    atomic_write_json(ctx.out / "items.json", items)
    quarter = max(1, len(history) // 4)
    mean = lambda key, rows: sum(r[key] for r in rows) / len(rows)  # noqa: E731
    return {"arm": ctx.wildcards["arm"], "seed": seed, "evaluated_on": on,
            "id_accuracy": acc["id"], "ood_accuracy": acc["ood"],
            "train_seconds": train_s, "seconds_per_step": train_s / max(1, rl["steps"]),
            "all_success_first_quarter": mean("all_success_fraction", history[:quarter]),
            "all_success_last_quarter": mean("all_success_fraction", history[-quarter:]),
            "pg_norm_first_quarter": mean("pg_norm", history[:quarter]),
            "pg_norm_last_quarter": mean("pg_norm", history[-quarter:]),
            "reward_first_quarter": mean("reward", history[:quarter]),
            "reward_last_quarter": mean("reward", history[-quarter:]),
            "clips_per_step": sum(r["clips"] for r in history) / len(history),
            # E2/E3's regime: the share of the sampled groups that gave a clip (every all-success
            # group does), and the share of steps the auxiliary term acted in
            "clip_share": sum(r["clipped_groups"] for r in history) / sum(r["groups"] for r in history),
            "steps_with_clip": sum(r["clips"] > 0 for r in history) / len(history)}


if __name__ == "__main__":
    main(run)
