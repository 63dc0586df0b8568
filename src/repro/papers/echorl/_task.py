"""What the echorl stages share: the prepared task, prompts as token ids, verifier rewards, greedy
accuracy, SFT batches and the step-entropy profile."""
from __future__ import annotations

from pathlib import Path

import torch

from repro.core.io import read_json
from repro.data.arithmetic import step_has_carry, tokenizer_for, verify
from repro.models.training import sft_batch
from repro.papers.echorl.method import delimiter_mask, step_entropies, step_spans
from repro.rl.rollout import sample


class Task:
    """The data stage's output: splits, tokenizer and verifier pattern."""

    def __init__(self, data_dir: Path):
        import datasets

        meta = read_json(Path(data_dir) / "meta.json")
        self.splits = datasets.load_from_disk(str(Path(data_dir) / "dataset"))
        self.tokenizer = tokenizer_for(meta["tokenizer"])
        self.pattern = meta["answer_pattern"]
        self.is_delim = delimiter_mask(self.tokenizer)

    def prompts(self, rows) -> list[list[int]]:
        return [self.tokenizer.encode(p, add_special_tokens=False) for p in rows["prompt"]]

    def rollouts(self, model, rows, **kw):
        tok = self.tokenizer
        return sample(model, self.prompts(rows), eos_id=tok.eos_token_id, pad_id=tok.pad_token_id, **kw)

    def rewards(self, rollouts, answers: list[str]) -> torch.Tensor:
        texts = [self.tokenizer.decode(r, skip_special_tokens=True) for r in rollouts.response_lists()]
        return torch.tensor([verify(t, answers[int(g)], self.pattern)
                             for t, g in zip(texts, rollouts.group_ids)])

    def correct(self, model, ds, batch_size: int, max_new_tokens: int) -> list[float]:
        """Greedy correctness (1.0 / 0.0) of every row of `ds` (a split or a selection of one), in row order."""
        out = []
        for i in range(0, len(ds), batch_size):
            rows = ds[i:i + batch_size]
            ro = self.rollouts(model, rows, group_size=1, max_new_tokens=max_new_tokens, greedy=True)
            out += self.rewards(ro, rows["answer"]).tolist()
        return out

    def accuracy(self, model, ds, batch_size: int, max_new_tokens: int) -> float:
        """Greedy accuracy on every row of `ds`."""
        c = self.correct(model, ds, batch_size, max_new_tokens)
        return sum(c) / len(c)

    def sft_batch(self, rows, max_len: int) -> dict:
        """prompt + solution + EOS, right-padded; loss on the solution and EOS only."""
        tok = self.tokenizer
        pairs = [(tok.encode(p, add_special_tokens=False), tok.encode(s, add_special_tokens=False) + [tok.eos_token_id])
                 for p, s in zip(rows["prompt"], rows["solution"])]
        return sft_batch(pairs, tok.pad_token_id, max_len)

    def entropy_profile(self, model, split: str, prompts: int, max_new_tokens: int, seed: int) -> dict:
        """Step entropies of sampled (temperature 1) responses: by step index, carry vs no-carry
        steps, and how often a response's highest-entropy step is a carry step (vs the base rate)."""
        ds = self.splits[split].select(range(min(prompts, len(self.splits[split]))))
        ro = self.rollouts(model, ds[:], group_size=1, max_new_tokens=max_new_tokens,
                           generator=torch.Generator().manual_seed(seed))
        lengths = ro.response_mask.sum(-1)
        by_index: dict[int, list[float]] = {}
        carry, plain, peak_carry, n_peak, base = [], [], 0, 0, []
        for i in range(len(ds)):
            resp = ro.responses[i]
            spans = step_spans(resp, int(lengths[i]), self.is_delim)
            ent = step_entropies(ro.entropies[i], spans)
            flags = [step_has_carry(self.tokenizer.decode(resp[a:b].tolist())) for a, b in spans]
            for k, (e, f) in enumerate(zip(ent, flags)):
                by_index.setdefault(k, []).append(e)
                if f is not None:
                    (carry if f else plain).append(e)
            steps = [k for k, f in enumerate(flags) if f is not None]
            if steps:
                top = max(steps, key=ent.__getitem__)
                peak_carry += bool(flags[top])
                n_peak += 1
                base.append(sum(bool(flags[k]) for k in steps) / len(steps))
        mean = lambda xs: sum(xs) / len(xs) if xs else None  # noqa: E731
        return {"by_step_index": {str(k): mean(v) for k, v in sorted(by_index.items())},
                "carry_steps": mean(carry), "no_carry_steps": mean(plain),
                "peak_at_carry_fraction": peak_carry / n_peak if n_peak else None,
                "carry_base_rate": mean(base)}
