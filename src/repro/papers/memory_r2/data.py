"""Stage 1: FactWorld dialogues (generated here; hub conversations in the same schema at `paper`) and
the tokenizer: one training pool per curriculum length, an SFT pool, validation and test."""
import statistics
from collections import Counter

from repro.core.stage import StageContext, main
from repro.data import factworld


def generated(src: dict, seed: int) -> dict:
    import datasets

    shape = {k: src[k] for k in ("chunks", "people", "mix")}
    pools = {f"train_s{s}": (src["train"], s) for s in src["train_sessions"]}
    pools.update(sft=(src["sft"], src["sessions"]), val=(src["val"], src["sessions"]), test=(src["test"], src["sessions"]))
    # every split from its own seed: no conversation is in two splits
    return datasets.DatasetDict({name: datasets.Dataset.from_list(
        factworld.generate(n, sessions, seed=seed * 1000 + i, **shape))
        for i, (name, (n, sessions)) in enumerate(sorted(pools.items()))})


def hub(src: dict):
    import datasets

    return datasets.DatasetDict({name: datasets.load_dataset(**s["load"], split=s.get("split", "train"))
                                 for name, s in src["splits"].items()})


def run(ctx: StageContext) -> dict:
    from transformers import AutoTokenizer

    p = ctx.params["data"]
    src = p["source"]
    splits = generated(src, ctx.seed) if src["kind"] == "generated" else hub(src)
    splits.save_to_disk(str(ctx.out / "dataset"))
    if p["tokenizer"] == "words":  # every word of the world, the prompts' markers and the operations
        words = factworld.vocabulary() + ["<ext>", "<mgr>", "<mem>", "<sep>", "insert", "update", "delete", "noop",
                                          "nothing"] + [f"m{j + 1}" for j in range(factworld.MAX_SLOTS)]
        tok = factworld.word_tokenizer(words)
    else:
        tok = AutoTokenizer.from_pretrained(p["tokenizer"])
    tok.save_pretrained(str(ctx.out / "tokenizer"))
    test = splits["test"]
    types = Counter(q["type"] for qas in test["qas"] for q in qas)
    return {"rows": {k: len(v) for k, v in splits.items()}, "vocab_size": len(tok),
            "test_qas": sum(types.values()), "test_qa_types": dict(sorted(types.items())),
            "test_words_per_session": statistics.fmean(sum(len(u.split()) for u in s)
                                                      for sessions in test["sessions"] for s in sessions),
            "test_facts_per_session": statistics.fmean(sum(f is not None for f in fs)
                                                      for facts in test["facts"] for fs in facts)}


if __name__ == "__main__":
    main(run)
