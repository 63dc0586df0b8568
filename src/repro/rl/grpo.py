"""Group-relative advantages and the PPO-clip policy loss (GRPO, Dr. GRPO-style normaliser)."""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class GroupStats:
    """Per group (index = group id): size, reward mean and std (unbiased, 0 for singletons)."""

    size: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor

    @property
    def degenerate(self) -> torch.Tensor:
        """Groups whose advantages are all zero: equal rewards, or a single rollout."""
        return self.std == 0

    def all_equal_to(self, value: float) -> torch.Tensor:
        """Degenerate groups whose rewards all equal `value` (e.g. 1.0: every rollout verified)."""
        return self.degenerate & (self.size > 0) & (self.mean == value)


def group_stats(rewards: torch.Tensor, group_ids: torch.Tensor) -> GroupStats:
    """Statistics of each group; `group_ids` are 0..K-1, rollouts of a group need not be adjacent."""
    rewards = rewards.double()
    k = int(group_ids.max()) + 1
    size = torch.bincount(group_ids, minlength=k).double()
    total = torch.zeros(k, dtype=torch.float64, device=rewards.device).index_add_(0, group_ids, rewards)
    mean = total / size.clamp(min=1)
    sq = torch.zeros(k, dtype=torch.float64, device=rewards.device).index_add_(0, group_ids, (rewards - mean[group_ids]) ** 2)
    std = torch.where(size > 1, (sq / (size - 1).clamp(min=1)).sqrt(), torch.zeros_like(sq))
    # float noise must not hide an all-equal group
    std = torch.where(std < 1e-12, torch.zeros_like(std), std)
    return GroupStats(size=size.long(), mean=mean, std=std)


SINGLETON = ("zero", "raw")


def group_advantages(rewards: torch.Tensor, group_ids: torch.Tensor, *, std_normalize: bool,
                     eps: float = 1e-6, singleton: str = "zero") -> torch.Tensor:
    """A_i = r_i - mean(group), divided by (std(group) + eps) if `std_normalize`; zero in
    degenerate groups. A group of one rollout gets 0 (`singleton="zero"`) or its raw reward
    (`"raw"`: Memory-R2's public code gives a singleton mean 0 and std 1)."""
    if singleton not in SINGLETON:
        raise ValueError(f"singleton={singleton!r}; expected one of {SINGLETON}")
    stats = group_stats(rewards, group_ids)
    adv = rewards.double() - stats.mean[group_ids]
    if std_normalize:
        adv = adv / (stats.std[group_ids] + eps)
    adv = torch.where(stats.degenerate[group_ids], torch.zeros_like(adv), adv)
    if singleton == "raw":
        adv = torch.where(stats.size[group_ids] == 1, rewards.double(), adv)
    return adv.to(rewards.dtype if rewards.is_floating_point() else torch.float32)


def informative_groups(stats: GroupStats, limit: int) -> torch.Tensor:
    """DAPO-style dynamic sampling: ids of the first `limit` groups that are not degenerate (their
    rollouts disagree, so they carry a policy gradient)."""
    return torch.nonzero(~stats.degenerate).flatten()[:limit]


def ppo_clip_loss(logprobs: torch.Tensor, old_logprobs: torch.Tensor, advantages: torch.Tensor,
                  mask: torch.Tensor, *, clip: float, max_len: int,
                  rows: torch.Tensor | None = None) -> tuple[torch.Tensor, dict]:
    """PPO-clip surrogate on response tokens [N, T]: summed over each response's tokens, divided by
    the constant `max_len` (no length bias), averaged over responses, or over those `rows` marks
    (e.g. only the groups dynamic sampling kept; 0 if it marks none)."""
    if rows is not None:
        mask = mask.bool() & rows[:, None]
    mask = mask.to(logprobs.dtype)
    ratio = torch.exp(logprobs - old_logprobs)
    adv = advantages[:, None].to(logprobs.dtype)
    surrogate = torch.minimum(ratio * adv, ratio.clamp(1 - clip, 1 + clip) * adv)
    per_response = (surrogate * mask).sum(-1).div(max_len)
    loss = -(per_response.mean() if rows is None else per_response.sum() / rows.sum().clamp(min=1))
    clipped = ((ratio - 1).abs() > clip).to(mask.dtype)
    return loss, {"clip_fraction": float((clipped * mask).sum() / mask.sum().clamp(min=1))}


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    mask = mask.to(values.dtype)
    return (values * mask).sum() / mask.sum().clamp(min=1)
