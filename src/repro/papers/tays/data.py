"""Stage 1: streaming videos with scripted events, per-second units and 4-way questions (synthetic
at CPU scale, a hub video-QA set at `paper`). Besides counts, it records how well the option texts
alone answer the test questions (`option_prior_accuracy`): the questions are drawn balanced, so
this should sit at chance (0.25), the level the T3 regime is set against."""
from collections import defaultdict

import numpy as np

from repro.core.stage import StageContext, main
from repro.data.events import LETTERS, SKIP, load_event_set
from repro.papers.tays.method import codec_for


def option_key(kind: str, option: str) -> tuple[str, str]:
    """What a text-only guesser sees of an option: its words (for `after`, without the object's name)."""
    return kind, " ".join(option.split()[2:] if kind == "after" else option.split())


def option_prior_accuracy(train, test) -> float:
    """Accuracy on `test` of answering from the option texts alone: each option scored by how often
    an option of the same key (`option_key`) was right in `train`, the best one chosen."""
    right, seen = defaultdict(int), defaultdict(int)
    for kind, options, answer in zip(train["kind"], train["options"], train["answer"]):
        for j, o in enumerate(options):
            right[option_key(kind, o)] += LETTERS[j] == answer
            seen[option_key(kind, o)] += 1
    rate = lambda key: right[key] / seen[key] if seen[key] else 0.0  # noqa: E731
    return float(np.mean([LETTERS[int(np.argmax([rate(option_key(kind, o)) for o in options]))] == answer
                          for kind, options, answer in zip(test["kind"], test["options"], test["answer"])]))


def run(ctx: StageContext) -> dict:
    d = ctx.params["data"]
    ds = load_event_set({**d["source"], "fps": d["fps"]}, ctx.seed)
    ds.save_to_disk(str(ctx.out / "videos"))
    codec = codec_for(ctx.params)
    out = {}
    for name, split in ds.items():
        units = [u for row in split["units"] for u in row]
        out[name] = {"videos": len(split), "seconds_mean": float(np.mean(split["seconds"])),
                     "skip_share": float(np.mean([u == SKIP for u in units])),
                     # + 1: each unit's terminator
                     "unit_tokens_mean": float(np.mean([len(codec.encode(u)) + 1 for u in units])),
                     "kinds": {k: int(c) for k, c in zip(*np.unique(split["kind"], return_counts=True))},
                     "answers": {k: int(c) for k, c in zip(*np.unique(split["answer"], return_counts=True))}}
    columns = lambda split: ds[split].select_columns(["kind", "options", "answer"])[:]  # noqa: E731
    out["option_prior_accuracy"] = option_prior_accuracy(columns("train"), columns("test"))
    return out


if __name__ == "__main__":
    main(run)
