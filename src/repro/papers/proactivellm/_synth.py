"""Streaming tasks with a known oracle: for every target word, how many source units (words) must
have been read before it is determined. The oracle is for evaluation (AUROC, oracle policy) and for
the V4 baseline's labels only; ProactiveLLM itself never sees it.

SynthMT, a monotone word transduction with two lookahead rules:
    source  A3 N5 V2 N1 not . N0 V4 N2 .      (clauses: NP V NP [not] .; NP = [A] N)
    target  n5 a3 u2 n1 . n0 v4 n2 .
  - adjective-noun swap: `A N` -> `n a`, so the adjective's translation needs the next word;
  - clause-final negation flips the verb (`v` -> `u`) and is dropped, so the verb (and everything
    after it in the target) needs the clause end (`not` or `.`).
SynthQA, a question, then a stream of facts (words of several types); the question asks for the
word of one type, which occurs exactly once, at a uniformly random position of the stream:
    source  q T2 : w0_5 w1_3 w2_7 w1_0     target  w2_7     (oracle: 6, the position of w2_7)
  Until it arrives the answer is any of the type's members; once read, it is determined.
"""
from __future__ import annotations

import random


def synthmt_example(rng: random.Random, p: dict, lex: dict) -> dict:
    src, tgt, need = [], [], []

    def noun_phrase():
        start = len(src)
        noun = rng.randrange(p["nouns"])
        if rng.random() < p["adjective_prob"]:
            adj = rng.randrange(p["adjectives"])
            src.extend([f"A{adj}", f"N{noun}"])
            return [(lex["n"][noun], start + 2), (lex["a"][adj], start + 2)]
        src.append(f"N{noun}")
        return [(lex["n"][noun], start + 1)]

    for _ in range(rng.randint(*p["clauses"])):
        words = noun_phrase()
        verb = rng.randrange(p["verbs"])
        src.append(f"V{verb}")
        obj = noun_phrase()
        end = len(src) + 1  # the word after the object (`not` or `.`) settles the verb
        negated = rng.random() < p["negation_prob"]
        if negated:
            src.append("not")
        src.append(".")
        verb_word = (lex["u"] if negated else lex["v"])[verb]
        words += [(verb_word, end)] + obj + [(".", len(src))]
        for w, n in words:
            tgt.append(w)
            need.append(n)
    return {"source": src, "target": tgt, "oracle": need}


def synthqa_example(rng: random.Random, p: dict) -> dict:
    n_facts = rng.randint(*p["facts"])
    asked = rng.randrange(p["categories"])
    at = rng.randrange(n_facts)
    others = [c for c in range(p["categories"]) if c != asked]
    src = ["q", f"T{asked}", ":"]
    for i in range(n_facts):
        cat = asked if i == at else rng.choice(others)
        src.append(f"w{cat}_{rng.randrange(p['members'])}")
    return {"source": src, "target": [src[3 + at]], "oracle": [4 + at]}


def lexicon(p: dict, seed: int) -> dict:
    """Target words of SynthMT: a fixed random bijection per word class (a verb and its negation
    share the index)."""
    rng = random.Random(seed)
    out = {}
    for cls, size in (("n", p["nouns"]), ("a", p["adjectives"]), ("v", p["verbs"])):
        perm = list(range(size))
        rng.shuffle(perm)
        out[cls] = [f"{cls}{i}" for i in perm]
    out["u"] = [w.replace("v", "u", 1) for w in out["v"]]
    return out


def generate(p: dict, seed: int):
    """DatasetDict(train, validation, test) with columns source, target (word lists) and oracle;
    test and validation sources never occur in train."""
    import datasets

    rng = random.Random(seed)
    lex = lexicon(p, seed) if p["kind"] == "synthmt" else None
    make = (lambda: synthmt_example(rng, p, lex)) if lex else (lambda: synthqa_example(rng, p))
    held, splits = set(), {}
    for split in ("test", "validation", "train"):  # held-out splits first; train avoids their sources
        rows = {"source": [], "target": [], "oracle": []}
        while len(rows["source"]) < p[split]:
            ex = make()
            key = " ".join(ex["source"])
            if key in held:
                continue
            if split != "train":
                held.add(key)
            for k, v in ex.items():
                rows[k].append(v)
        splits[split] = datasets.Dataset.from_dict(rows)
    return datasets.DatasetDict(splits)
