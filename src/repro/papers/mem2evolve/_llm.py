"""The LLM backbone at `paper`: ranks the DSL's functions for a task from its description and visible
examples. One batched forward per task scores every vocabulary item (a function's name, a tool's
composition) as the continuation of the prompt; the search multiplies its prior by these weights
(mean 1, so a uniform LLM changes nothing). At smoke/mini there is no LLM: the search prior is the
non-neural one."""
from __future__ import annotations

import json

import torch


class LLMProposer:
    def __init__(self, spec: dict):
        from accelerate import Accelerator
        from transformers import AutoTokenizer

        from repro.models.causal_lm import build_causal_lm

        self.device = Accelerator(cpu=not torch.cuda.is_available()).device
        self.tok = AutoTokenizer.from_pretrained(spec.get("tokenizer", spec["pretrained"]))
        self.model = build_causal_lm(spec).to(self.device).eval()
        self.temperature = spec["temperature"]

    @staticmethod
    def prompt(task) -> str:
        lines = [f"Task ({task.description}): compose functions of a small DSL, applied left to right."]
        lines += [f"{json.dumps(x)} -> {json.dumps(y)}" for x, y in task.visible]
        return "\n".join(lines) + "\nA step of the solution:"

    @torch.no_grad()
    def __call__(self, task, vocab: dict) -> dict[str, float]:
        prompt = self.tok(self.prompt(task), add_special_tokens=False)["input_ids"]
        names = list(vocab)  # a tool is scored by the functions it composes
        conts = [self.tok(" " + " then ".join(vocab[n]), add_special_tokens=False)["input_ids"] for n in names]
        width = len(prompt) + max(map(len, conts))
        ids = torch.zeros(len(names), width, dtype=torch.long)
        mask = torch.zeros(len(names), width, dtype=torch.long)
        for i, c in enumerate(conts):
            seq = prompt + c
            ids[i, :len(seq)], mask[i, :len(seq)] = torch.tensor(seq), 1
        logp = torch.log_softmax(self.model(input_ids=ids.to(self.device),
                                            attention_mask=mask.to(self.device)).logits.float(), -1).cpu()
        # log P(name | prompt): sum over the name's tokens (position t predicts token t + 1)
        score = torch.stack([logp[i, len(prompt) - 1 + torch.arange(len(c)), torch.tensor(c)].sum()
                             for i, c in enumerate(conts)])
        w = torch.softmax(score / self.temperature, 0) * len(names)
        return dict(zip(names, w.tolist()))
