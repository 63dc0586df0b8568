"""Verifiable step-wise arithmetic: chained multi-operand addition written one step per line.

    47+85+19+63=  ->  47+85=132\\n132+19=151\\n151+63=214\\n#214

The verifier reads the number after `#` (any regex with one group at `paper`, e.g. `\\boxed{..}`).
Splits are `datasets` tables with columns `prompt`, `answer` (and `solution` where a worked solution
exists, for SFT), saved with `save_to_disk`; the `paper` profile loads hub datasets through
`datasets.load_dataset` into the same columns. A character vocabulary keeps every step delimiter
(newline) a single token.
"""
from __future__ import annotations

import random
import re

CHARS = "0123456789+=#\n"


class CharTokenizer:
    """Characters of the task plus <pad> and <eos>; the same interface the stages use on an HF
    tokenizer (encode without special tokens, decode skipping them, pad/eos ids, len)."""

    pad_token_id = 0
    eos_token_id = 1

    def __init__(self):
        self.itos = ["<pad>", "<eos>", *CHARS]
        self.stoi = {c: i for i, c in enumerate(self.itos) if len(c) == 1}

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return [self.stoi[c] for c in text]

    def decode(self, ids, skip_special_tokens: bool = True) -> str:
        return "".join(self.itos[i] for i in ids if i > self.eos_token_id or not skip_special_tokens)


def tokenizer_for(spec: str):
    """`chars` (the task's vocabulary) or a hub name / local folder for `AutoTokenizer`."""
    if spec == "chars":
        return CharTokenizer()
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(spec)
    if tok.pad_token_id is None:  # base LMs often ship none; padding is always masked out
        tok.pad_token = tok.eos_token
    return tok


def solve(operands: list[int]) -> tuple[str, int]:
    """The worked solution, one partial sum per line, and the final answer after `#`."""
    lines, total = [], operands[0]
    for x in operands[1:]:
        lines.append(f"{total}+{x}={total + x}")
        total += x
    return "\n".join(lines) + f"\n#{total}", total


def sample_problem(rng: random.Random, operands: list[int], digits: list[int]) -> dict:
    """`operands` and `digits` are inclusive [lo, hi] ranges."""
    xs = []
    for _ in range(rng.randint(*operands)):
        d = rng.randint(*digits)
        xs.append(rng.randint(10 ** (d - 1), 10**d - 1))
    solution, total = solve(xs)
    return {"prompt": "+".join(map(str, xs)) + "=", "answer": str(total), "solution": solution}


def in_kind(prompt: str, kind: dict) -> bool:
    """Whether `kind` ({operands, digits}) could have drawn `prompt`."""
    xs = prompt.rstrip("=").split("+")
    lo, hi = kind["digits"]
    return kind["operands"][0] <= len(xs) <= kind["operands"][1] and all(lo <= len(x) <= hi for x in xs)


def sample_split(n: int, kinds: list[dict], seed: int | str, exclude: set[str] = frozenset(),
                 held_out: list[dict] = ()) -> dict:
    """n problems spread evenly over `kinds` (each {operands, digits}); prompts in `exclude` and
    problems that a `held_out` kind could have drawn are skipped."""
    rng = random.Random(seed)
    rows = {"prompt": [], "answer": [], "solution": []}
    seen = set(exclude)
    for i in range(n):
        while True:
            row = sample_problem(rng, **kinds[i % len(kinds)])
            if row["prompt"] not in seen and not any(in_kind(row["prompt"], k) for k in held_out):
                break
        seen.add(row["prompt"])
        for k, v in row.items():
            rows[k].append(v)
    return rows


def generate_task(source: dict, seed: int):
    """DatasetDict(sft, train, id_test, ood_test[, id_val, ood_val]): SFT solutions and RL prompts
    from the ID distribution, test prompts never seen in training. The OOD kinds are held out of every
    ID split, so an OOD kind may overlap the ID ranges (e.g. every operand two-digit, a combination
    training never shows); where they do not overlap, nothing is skipped and the splits are the same.
    With `val_prompts`, validation splits (for choosing design values) are drawn after the others,
    disjoint from training and test; the other splits do not change."""
    import datasets

    id_kinds, ood_kinds = [source["id"]], source["ood"]
    sft = sample_split(source["sft_examples"], id_kinds, seed * 4 + 1, held_out=ood_kinds)
    train = sample_split(source["train_prompts"], id_kinds, seed * 4 + 2, held_out=ood_kinds)
    seen = set(sft["prompt"]) | set(train["prompt"])
    id_test = sample_split(source["test_prompts"], id_kinds, seed * 4 + 3, exclude=seen, held_out=ood_kinds)
    ood_test = sample_split(source["test_prompts"], ood_kinds, seed * 4 + 4, exclude=seen)
    splits = {"sft": sft, "train": train, "id_test": id_test, "ood_test": ood_test}
    if source.get("val_prompts"):
        seen |= set(id_test["prompt"]) | set(ood_test["prompt"])
        splits["id_val"] = sample_split(source["val_prompts"], id_kinds, f"{seed}:id_val", exclude=seen,
                                        held_out=ood_kinds)
        splits["ood_val"] = sample_split(source["val_prompts"], ood_kinds, f"{seed}:ood_val", exclude=seen)
    return datasets.DatasetDict({k: datasets.Dataset.from_dict(v) for k, v in splits.items()})


def load_hub_task(source: dict):
    """Each split from its own `datasets.load_dataset(**load)[split]`, columns renamed to ours."""
    import datasets

    out = {}
    for name, s in source["splits"].items():
        ds = datasets.load_dataset(**s["load"])[s.get("split", "train")]
        cols = s["columns"]  # ours -> theirs
        out[name] = datasets.Dataset.from_dict({ours: [str(v) for v in ds[theirs]] for ours, theirs in cols.items()})
    return datasets.DatasetDict(out)


def load_task(source: dict, seed: int):
    return generate_task(source, seed) if source["kind"] == "generated" else load_hub_task(source)


def extract_answer(text: str, pattern: str) -> str | None:
    """The last match of `pattern`'s first group, stripped; None when the response gives none."""
    found = re.findall(pattern, text)
    return found[-1].strip() if found else None


def verify(response: str, answer: str, pattern: str) -> float:
    """Reward 1.0 iff the extracted final answer equals the reference answer."""
    return float(extract_answer(response, pattern) == answer.strip())


def step_has_carry(step: str) -> bool | None:
    """Whether the step `a+b=c` carries in some column (None for a line that is not a step)."""
    m = re.fullmatch(r"(\d+)\+(\d+)=\d*\n?", step)
    if not m:
        return None
    a, b = (s[::-1] for s in m.groups())
    # the first carry can only come from a column whose own digits sum to 10 or more
    return any(int(x) + int(y) >= 10 for x, y in zip(a, b))
