"""repro.rl: group advantages, degenerate groups, dynamic sampling, PPO-clip loss, batched KV-cache rollouts."""
import pytest
import torch

from repro.rl.grpo import group_advantages, group_stats, informative_groups, ppo_clip_loss
from repro.rl.rollout import Rollouts, response_logprobs, sample


def test_advantages_without_std_are_reward_minus_group_mean():
    r = torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0])
    g = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    adv = group_advantages(r, g, std_normalize=False)
    assert torch.allclose(adv, torch.tensor([0.5, -0.5, -0.5, 0.5, 0, 0, 0, 0]))


def test_advantages_with_std_divide_by_unbiased_group_std():
    r = torch.tensor([1.0, 0.0, 0.0, 1.0])
    adv = group_advantages(r, torch.zeros(4, dtype=torch.long), std_normalize=True)
    std = torch.tensor([1.0, 0.0, 0.0, 1.0]).std()  # unbiased, 0.577
    assert torch.allclose(adv, torch.tensor([0.5, -0.5, -0.5, 0.5]) / (std + 1e-6), atol=1e-5)


def test_all_success_all_fail_and_singleton_groups_give_zero_advantage():
    # groups of different sizes, not adjacent (e.g. global groups beside local re-rollout groups)
    r = torch.tensor([1.0, 0.0, 1.0, 0.0, 1.0, 0.7, 0.2])
    g = torch.tensor([0, 1, 0, 1, 2, 3, 3])
    for std in (False, True):
        adv = group_advantages(r, g, std_normalize=std)
        assert adv[[0, 2]].abs().sum() == 0 and adv[[1, 3]].abs().sum() == 0 and adv[4] == 0
        assert adv[5] > 0 > adv[6]
    stats = group_stats(r, g)
    assert stats.degenerate.tolist() == [True, True, True, False]
    assert stats.all_equal_to(1.0).tolist() == [True, False, True, False]
    assert stats.all_equal_to(0.0).tolist() == [False, True, False, False]
    assert stats.size.tolist() == [2, 2, 1, 2]


def test_ppo_clip_loss_normalises_by_constant_length_and_clips():
    logp = torch.log(torch.tensor([[0.5, 0.5, 0.5], [0.5, 0.5, 0.5]]))
    old = torch.log(torch.tensor([[0.5, 0.25, 0.5], [0.5, 0.5, 0.5]]))  # ratio 2 at (0, 1)
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]], dtype=torch.bool)
    adv = torch.tensor([1.0, -2.0])
    loss, info = ppo_clip_loss(logp, old, adv, mask, clip=0.2, max_len=10)
    # row 0: -(1 + 1.2)/10 (ratio 2 clipped to 1.2 for a positive advantage); row 1: 2/10
    assert loss.item() == pytest.approx(((-(1 + 1.2)) / 10 + 2 / 10) / 2)
    assert info["clip_fraction"] == pytest.approx(1 / 3)


def test_dynamic_sampling_keeps_the_first_non_degenerate_groups():
    # groups: all-success, mixed, all-fail, mixed, mixed
    r = torch.tensor([1.0, 1.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 1.0])
    stats = group_stats(r, torch.arange(5).repeat_interleave(2))
    assert informative_groups(stats, 2).tolist() == [1, 3]
    assert informative_groups(stats, 9).tolist() == [1, 3, 4]
    assert informative_groups(group_stats(torch.ones(4), torch.tensor([0, 0, 1, 1])), 2).tolist() == []


def test_select_groups_reorders_rows_and_renumbers_groups():
    n, t = 6, 3
    ro = Rollouts(sequences=torch.arange(n)[:, None].repeat(1, 5), attention_mask=torch.ones(n, 5, dtype=torch.long),
                  prompt_width=2, response_mask=torch.ones(n, t, dtype=torch.bool),
                  logprobs=-torch.arange(n, dtype=torch.float)[:, None].repeat(1, t),
                  entropies=torch.zeros(n, t), group_ids=torch.tensor([0, 1, 0, 1, 2, 2]))
    sub, idx = ro.select_groups(torch.tensor([2, 0]))
    assert idx.tolist() == [4, 5, 0, 2]
    assert sub.group_ids.tolist() == [0, 0, 1, 1]
    assert sub.sequences[:, 0].tolist() == [4, 5, 0, 2] and sub.logprobs[:, 0].tolist() == [-4, -5, 0, -2]
    assert sub.prompt_width == 2 and len(ro.select_groups(torch.tensor([], dtype=torch.long))[1]) == 0


def test_ppo_clip_loss_over_marked_rows_equals_the_loss_on_those_rows_alone():
    g = torch.Generator().manual_seed(0)
    logp, old = torch.randn(4, 3, generator=g), torch.randn(4, 3, generator=g)
    adv, mask = torch.tensor([1.0, -1.0, 0.5, 2.0]), torch.rand(4, 3, generator=g) > 0.3
    rows = torch.tensor([True, False, True, False])
    full, _ = ppo_clip_loss(logp, old, adv, mask, clip=0.2, max_len=3, rows=rows)
    alone, _ = ppo_clip_loss(logp[rows], old[rows], adv[rows], mask[rows], clip=0.2, max_len=3)
    assert full.item() == pytest.approx(alone.item())
    none, _ = ppo_clip_loss(logp, old, adv, mask, clip=0.2, max_len=3, rows=torch.zeros(4, dtype=torch.bool))
    assert none.item() == 0.0


def test_on_policy_gradient_is_advantage_weighted_logprob_gradient():
    logp = torch.tensor([[-1.0, -2.0]], requires_grad=True)
    loss, _ = ppo_clip_loss(logp, logp.detach(), torch.tensor([3.0]), torch.ones(1, 2, dtype=torch.bool),
                            clip=0.2, max_len=4)
    loss.backward()
    assert torch.allclose(logp.grad, torch.full((1, 2), -3.0 / 4))


def test_rollouts_reproducible_with_a_fixed_seed_and_cache_matches_rescoring(hf_llama):
    prompts = [[5, 6, 7], [8, 9], [10, 11, 12, 13]]
    kw = dict(group_size=3, max_new_tokens=8, eos_id=1, pad_id=0)
    a = sample(hf_llama, prompts, generator=torch.Generator().manual_seed(7), **kw)
    b = sample(hf_llama, prompts, generator=torch.Generator().manual_seed(7), **kw)
    c = sample(hf_llama, prompts, generator=torch.Generator().manual_seed(8), **kw)
    assert torch.equal(a.sequences, b.sequences) and torch.equal(a.logprobs, b.logprobs)
    assert not torch.equal(a.sequences, c.sequences)
    assert a.group_ids.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert a.prompt_width == 4 and a.sequences[3, :2].tolist() == [0, 0]  # left padding
    # the KV-cache sampling path and a full forward on the padded batch agree
    with torch.no_grad():
        logp, ent = response_logprobs(hf_llama, a)
    m = a.response_mask
    assert torch.allclose(logp[m], a.logprobs[m], atol=1e-4)
    assert torch.allclose(ent[m], a.entropies[m], atol=1e-4)


def test_greedy_rollouts_stop_at_eos_and_mask_after_it(hf_llama):
    with torch.no_grad():
        first = hf_llama(torch.tensor([[5, 6]])).logits[0, -1].argmax().item()
    ro = sample(hf_llama, [[5, 6]], group_size=2, max_new_tokens=5, eos_id=first, pad_id=0, greedy=True)
    assert ro.responses[:, 0].tolist() == [first, first]
    assert ro.responses.shape[1] == 1 and ro.response_mask.all()  # everyone stopped: loop ends
