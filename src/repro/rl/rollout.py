"""Sampling G responses per prompt in one batch on the KV cache, and re-scoring them for training.

Prompts are left-padded so every row's next token sits in the last column; explicit position ids
keep padded rows' positions starting at 0. Entropies are those of the temperature-1 distribution
(the policy itself), whatever temperature samples, and only over response tokens.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Rollouts:
    sequences: torch.Tensor       # [N, W + T] left-padded prompt, then response (pad after EOS)
    attention_mask: torch.Tensor  # [N, W + T]
    prompt_width: int             # W
    response_mask: torch.Tensor   # [N, T] generated tokens, EOS included
    logprobs: torch.Tensor        # [N, T] log-prob of each sampled token under the sampling dist.
    entropies: torch.Tensor       # [N, T] entropy of the temperature-1 distribution at each token
    group_ids: torch.Tensor       # [N] index of the prompt a rollout answers

    @property
    def responses(self) -> torch.Tensor:
        return self.sequences[:, self.prompt_width:]

    def response_lists(self) -> list[list[int]]:
        return [r[m].tolist() for r, m in zip(self.responses, self.response_mask)]

    def select_groups(self, groups: torch.Tensor) -> tuple[Rollouts, torch.Tensor]:
        """The rollouts of `groups` (group ids; renumbered 0..len-1 in this order) and their row
        indices here, e.g. to index the rewards."""
        rows = [torch.nonzero(self.group_ids == g).flatten() for g in groups.tolist()]
        idx = torch.cat(rows) if rows else torch.zeros(0, dtype=torch.long, device=self.group_ids.device)
        sizes = torch.tensor([len(r) for r in rows], dtype=torch.long, device=idx.device)
        return Rollouts(
            sequences=self.sequences[idx], attention_mask=self.attention_mask[idx],
            prompt_width=self.prompt_width, response_mask=self.response_mask[idx],
            logprobs=self.logprobs[idx], entropies=self.entropies[idx],
            group_ids=torch.arange(len(rows), device=idx.device).repeat_interleave(sizes)), idx


def concat(parts: list[Rollouts]) -> Rollouts:
    """One batch of rollouts sampled in several calls (e.g. one call per agent turn): prompts
    left-padded to the widest, responses right-padded to the longest; group ids kept as they are."""
    width = max(p.prompt_width for p in parts)
    length = max(p.response_mask.shape[1] for p in parts)

    def pad(x: torch.Tensor, left: int, right: int) -> torch.Tensor:
        return torch.nn.functional.pad(x, (left, right))

    seqs, masks, resp_masks, logps, ents = [], [], [], [], []
    for p in parts:
        left, right = width - p.prompt_width, length - p.response_mask.shape[1]
        # pad tokens are masked out everywhere, so their id does not matter
        seqs.append(pad(p.sequences, left, right))
        masks.append(pad(p.attention_mask, left, right))
        resp_masks.append(pad(p.response_mask, 0, right))
        logps.append(pad(p.logprobs, 0, right))
        ents.append(pad(p.entropies, 0, right))
    return Rollouts(sequences=torch.cat(seqs), attention_mask=torch.cat(masks), prompt_width=width,
                    response_mask=torch.cat(resp_masks), logprobs=torch.cat(logps),
                    entropies=torch.cat(ents), group_ids=torch.cat([p.group_ids for p in parts]))


def left_pad(prompts: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for i, p in enumerate(prompts):
        ids[i, width - len(p):] = torch.tensor(p, dtype=torch.long)
        mask[i, width - len(p):] = 1
    return ids, mask


def positions(mask: torch.Tensor) -> torch.Tensor:
    return (mask.cumsum(-1) - 1).clamp(min=0)


@torch.no_grad()
def sample(model, prompts: list[list[int]], *, group_size: int, max_new_tokens: int, eos_id: int,
           pad_id: int, temperature: float = 1.0, greedy: bool = False,
           generator: torch.Generator | None = None) -> Rollouts:
    """`group_size` rollouts of each prompt (rows i*G .. i*G+G-1 answer prompt i)."""
    device = next(model.parameters()).device
    rows = [p for p in prompts for _ in range(group_size)]
    ids, mask = (t.to(device) for t in left_pad(rows, pad_id))
    width = ids.shape[1]
    out = model(input_ids=ids, attention_mask=mask, position_ids=positions(mask), use_cache=True)
    n = len(rows)
    done = torch.zeros(n, dtype=torch.bool, device=device)
    tokens, logps, ents, live = [], [], [], []
    for _ in range(max_new_tokens):
        logits = out.logits[:, -1].float()
        logp1 = torch.log_softmax(logits, -1)
        ent = -(logp1.exp() * logp1).sum(-1)
        logp_t = logp1 if temperature == 1.0 else torch.log_softmax(logits / temperature, -1)
        if greedy:
            tok = logp_t.argmax(-1)
        else:
            tok = torch.multinomial(logp_t.exp(), 1, generator=generator).squeeze(-1)
        tok = torch.where(done, torch.full_like(tok, pad_id), tok)
        tokens.append(tok)
        logps.append(logp_t.gather(-1, tok[:, None]).squeeze(-1))
        ents.append(ent)
        live.append(~done)
        done = done | (tok == eos_id)
        if bool(done.all()):
            break
        mask = torch.cat([mask, torch.ones((n, 1), dtype=mask.dtype, device=device)], dim=1)
        out = model(input_ids=tok[:, None], attention_mask=mask, position_ids=positions(mask)[:, -1:],
                    past_key_values=out.past_key_values, use_cache=True)
    response = torch.stack(tokens, 1)
    response_mask = torch.stack(live, 1)
    return Rollouts(
        sequences=torch.cat([ids, response], 1),
        attention_mask=torch.cat([mask[:, :width], response_mask.long()], 1),
        prompt_width=width, response_mask=response_mask,
        logprobs=torch.stack(logps, 1) * response_mask, entropies=torch.stack(ents, 1) * response_mask,
        group_ids=torch.arange(len(prompts), device=device).repeat_interleave(group_size))


def response_logprobs(model, rollouts: Rollouts, temperature: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probs of the response tokens (at the sampling temperature, to match `Rollouts.logprobs`)
    and the temperature-1 token entropies under `model`, with grad, [N, T]."""
    seq, mask = rollouts.sequences, rollouts.attention_mask
    logits = model(input_ids=seq, attention_mask=mask, position_ids=positions(mask)).logits
    logits = logits[:, rollouts.prompt_width - 1:-1].float()
    logp1 = torch.log_softmax(logits, -1)
    logp = logp1 if temperature == 1.0 else torch.log_softmax(logits / temperature, -1)
    token_logp = logp.gather(-1, rollouts.responses[:, :, None]).squeeze(-1)
    entropy = -(logp1.exp() * logp1).sum(-1)
    return token_logp, entropy
