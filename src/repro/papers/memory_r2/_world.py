"""What the memory_r2 stages share: the prepared dialogues and tokenizer, the role models (one shared
LM or one per role), SFT batches, and the greedy evaluation's per-QA records."""
from __future__ import annotations

import statistics
from pathlib import Path

import torch

from repro.models.training import sft_batch
from repro.papers.memory_r2 import method


class World:
    """The data stage's output: conversation splits and the tokenizer."""

    def __init__(self, data_dir: Path):
        import datasets
        from transformers import AutoTokenizer

        self.splits = datasets.load_from_disk(str(Path(data_dir) / "dataset"))
        self.tokenizer = AutoTokenizer.from_pretrained(str(Path(data_dir) / "tokenizer"))
        if self.tokenizer.pad_token_id is None:  # padding is always masked out
            self.tokenizer.pad_token = self.tokenizer.eos_token

    def convs(self, split: str) -> list[dict]:
        return self.splits[split].to_list()

    def sft_batch(self, examples: list[tuple[str, str, str]], max_len: int) -> dict:
        """prompt + target + EOS, right-padded; loss on the target and EOS only."""
        tok = self.tokenizer
        pairs = [(tok.encode(prompt, add_special_tokens=False),
                  tok.encode(" " + target, add_special_tokens=False) + [tok.eos_token_id]) for _, prompt, target in examples]
        return sft_batch(pairs, tok.pad_token_id, max_len)


def role_models(folder: Path, shared: bool) -> dict:
    """{role: model}: the same object for both roles when the parameters are shared."""
    from repro.models.causal_lm import load_checkpoint

    if shared:
        m = load_checkpoint(folder / "shared")
        return {role: m for role in method.ROLES}
    return {role: load_checkpoint(folder / role) for role in method.ROLES}


def unique(models: dict) -> list:
    return list({id(m): m for m in models.values()}.values())


def agent(models: dict, world: World, params: dict) -> method.Agent:
    ro = params["rollout"]
    return method.Agent(models, world.tokenizer, k=ro["top_k"],
                        max_new_tokens={"extractor": ro["extractor_tokens"], "manager": ro["manager_tokens"]})


@torch.no_grad()
def evaluate(models: dict, world: World, params: dict, split: str) -> list[dict]:
    """Greedy rollouts of every conversation of `split`, one record each (per-QA F1, memory)."""
    for m in unique(models):
        m.eval()
    convs = world.convs(split)
    batch = params["evaluate"]["batch_size"]
    out = []
    for i in range(0, len(convs), batch):
        out += method.greedy_eval(agent(models, world, params), convs[i:i + batch], params["rollout"]["top_k"],
                                  method.Reward(**params["reward"]))
    return out


def summary(records: list[dict]) -> dict:
    """Mean F1 over QAs (all, and by type), memory failure, size and compression penalty (its mean
    and the share of conversations where it is non-zero) over conversations."""
    f1 = [x for r in records for x in r["f1"]]
    by_type = {}
    for r in records:
        for x, t in zip(r["f1"], r["types"]):
            by_type.setdefault(t, []).append(x)
    ops = {}
    for r in records:
        for k, v in r["ops"].items():
            ops[k] = ops.get(k, 0) + v
    return {"f1": statistics.fmean(f1), "f1_by_type": {t: statistics.fmean(v) for t, v in sorted(by_type.items())},
            "memory_failure": statistics.fmean(r["memory_failure"] for r in records),
            "memory_entries": statistics.fmean(r["memory_entries"] for r in records),
            "memory_tokens": statistics.fmean(r["memory_tokens"] for r in records),
            "penalty": statistics.fmean(r["penalty"] for r in records),
            "penalty_nonzero": statistics.fmean(r["penalty"] > 0 for r in records),
            "ops_per_conversation": {k: v / len(records) for k, v in sorted(ops.items())}}
