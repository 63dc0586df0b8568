"""EchoRL's mechanism: the EchoClip of an advantage-degenerated group, fed back as supervision.

1. A degenerated group: every rollout of a prompt verified correct, so GRPO gives it no gradient.
2. Split each successful response into steps at the step delimiter (newline tokens); the step
   entropy is the mean token entropy of the sampling distribution over the step's tokens.
3. The EchoClip is the response prefix that ends at the highest-entropy step ("the hardest point it
   still got right"). Which rollout of the group gives it is not public: `peak` takes the rollout with
   the highest peak step entropy, `all` takes every rollout.
4. Total loss = L_policy + beta * NLL(clip tokens | prompt).

The ablations change only step 3: the clip ends at a random step, at the lowest-entropy step, or
covers the whole response (plain SFT on successful responses).
"""
from __future__ import annotations

import random

import torch

CLIP_ENDS = ("max_entropy", "random_step", "min_entropy", "whole_response")


def delimiter_mask(tokenizer, delimiter: str = "\n") -> torch.Tensor:
    """[V] True for tokens whose text contains the step delimiter (one token in the char vocab)."""
    return torch.tensor([delimiter in tokenizer.decode([i], skip_special_tokens=False)
                         for i in range(len(tokenizer))])


def step_spans(response: torch.Tensor, length: int, is_delim: torch.Tensor) -> list[tuple[int, int]]:
    """[start, end) of each step of response[:length]; a step ends with its delimiter token, and the
    tokens after the last delimiter (the final answer line, EOS) form the last step."""
    ends = [i + 1 for i in range(length) if bool(is_delim[response[i]])]
    if not ends or ends[-1] < length:
        ends.append(length)
    return list(zip([0, *ends[:-1]], ends))


def step_entropies(entropies: torch.Tensor, spans: list[tuple[int, int]]) -> list[float]:
    return [float(entropies[a:b].mean()) for a, b in spans]


def clip_end(step_ent: list[float], how: str, rng: random.Random) -> int:
    """Index of the last step of the clip."""
    if how == "max_entropy":
        return max(range(len(step_ent)), key=step_ent.__getitem__)
    if how == "min_entropy":
        return min(range(len(step_ent)), key=step_ent.__getitem__)
    if how == "random_step":
        return rng.randrange(len(step_ent))
    if how == "whole_response":
        return len(step_ent) - 1
    raise ValueError(f"unknown clip end {how!r}; expected one of {CLIP_ENDS}")


def echo_clips(rollouts, rewards: torch.Tensor, success_groups: torch.Tensor, is_delim: torch.Tensor, *,
               how: str, rollout_choice: str, rng: random.Random) -> tuple[torch.Tensor, list[dict]]:
    """Mask [N, T] of the clip tokens of every all-success group, and one record per clip
    (rollout, end step, number of steps, step entropies)."""
    mask = torch.zeros_like(rollouts.response_mask)
    lengths = rollouts.response_mask.sum(-1)
    records = []
    for g in torch.nonzero(success_groups).flatten().tolist():
        members = torch.nonzero((rollouts.group_ids == g) & (rewards > 0)).flatten().tolist()
        steps = {}
        for i in members:
            spans = step_spans(rollouts.responses[i], int(lengths[i]), is_delim)
            steps[i] = (spans, step_entropies(rollouts.entropies[i], spans))
        if rollout_choice == "peak":
            members = [max(members, key=lambda i: max(steps[i][1]))]
        for i in members:
            spans, ent = steps[i]
            end = clip_end(ent, how, rng)
            mask[i, :spans[end][1]] = True
            records.append({"rollout": i, "end_step": end, "steps": len(spans), "step_entropy": ent})
    return mask, records


def clip_nll(logprobs: torch.Tensor, clip_mask: torch.Tensor) -> torch.Tensor:
    """Mean negative log-likelihood of the clip tokens given the prompt (0 without clips)."""
    m = clip_mask.to(logprobs.dtype)
    return -(logprobs * m).sum() / m.sum().clamp(min=1)
