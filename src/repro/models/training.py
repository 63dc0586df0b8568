"""A plain causal-LM training loop under accelerate (CPU here, `accelerate launch` on GPUs)."""
from __future__ import annotations

import math
import statistics
from typing import Callable

import torch
from tqdm.auto import tqdm


def cosine_lr(step: int, steps: int, warmup: int) -> float:
    """Learning-rate multiplier: linear warm-up over `warmup` steps, then cosine down to 0.1.

    Not transformers' `get_cosine_schedule_with_warmup`, which decays to 0. After the warm-up it is
    exactly `get_cosine_with_min_lr_schedule_with_warmup(min_lr_rate=0.1)`; during it, this one is a step
    ahead (1/warmup at step 0, the peak at step warmup - 1; theirs spends step 0 at lr 0). Kept, so the
    recorded results stay what they are; tests/test_core.py pins the relation.
    """
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))


def train_causal_lm(model, next_batch: Callable[[int], torch.Tensor | dict], *, steps: int, lr: float,
                    warmup: int = 0, weight_decay: float = 0.0, grad_clip: float = 1.0,
                    desc: str = "train", aux_loss: Callable[[], torch.Tensor] | None = None,
                    after_step: Callable[[int], bool | None] | None = None,
                    schedule: Callable[[int], float] | None = None) -> list[float]:
    """Train on `next_batch(step)`; returns the LM loss per step.

    A batch is a token tensor [B, T] (loss on every token) or a dict of model inputs with `labels`
    (-100 where no loss, e.g. prompts and padding in SFT). `aux_loss()` is added to the LM loss after
    each forward (e.g. an MoE balancing loss that reads what the forward kept); `after_step(step)`
    runs after each optimizer step (adaptive coefficients, logging) and stops training early by
    returning True (e.g. once a target accuracy is reached). `schedule(step)` is the learning-rate
    multiplier (default: linear warm-up over `warmup` steps, then cosine to 0.1).
    """
    from accelerate import Accelerator

    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule or (lambda s: cosine_lr(s, steps, warmup)))
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    model.train()
    losses = []
    for step in tqdm(range(steps), desc=desc, mininterval=5):
        batch = next_batch(step)
        if isinstance(batch, dict):
            loss = model(**{k: v.to(accelerator.device) for k, v in batch.items()}).loss
        else:
            batch = batch.to(accelerator.device)
            loss = model(input_ids=batch, labels=batch).loss
        accelerator.backward(loss + aux_loss() if aux_loss else loss)
        if grad_clip:
            accelerator.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
        if after_step and after_step(step):
            break
    model.eval()
    return losses


def sft_batch(pairs: list[tuple[list[int], list[int]]], pad_id: int, max_len: int) -> dict:
    """Supervised fine-tuning batch of (prompt ids, target ids) pairs: prompt + target truncated to
    max_len, right-padded; loss (labels) on the target only, -100 on the prompt and the padding."""
    seqs = [(p + t)[:max_len] for p, t in pairs]
    labels = [([-100] * len(p) + t)[:max_len] for p, t in pairs]
    width = max(map(len, seqs))
    ids = torch.full((len(seqs), width), pad_id)
    lab = torch.full((len(seqs), width), -100)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, (seq, target) in enumerate(zip(seqs, labels)):
        ids[i, :len(seq)], lab[i, :len(target)], mask[i, :len(seq)] = torch.tensor(seq), torch.tensor(target), 1
    return {"input_ids": ids, "attention_mask": mask, "labels": lab}


def tail_mean(values: list[float], fraction: float = 0.1) -> float | None:
    """Mean of the last `fraction` of per-step values (one step is too noisy to report)."""
    return statistics.mean(values[-max(1, int(len(values) * fraction)):]) if values else None


@torch.no_grad()
def mean_loss(forward_loss: Callable[[torch.Tensor], torch.Tensor], batches: list[torch.Tensor]) -> float:
    """Token-weighted mean next-token loss (nats) over fixed evaluation batches."""
    total, count = 0.0, 0
    for batch in batches:
        n = batch.shape[0] * (batch.shape[1] - 1)
        total += forward_loss(batch).item() * n
        count += n
    return total / count
