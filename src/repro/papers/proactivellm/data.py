"""Stage 1: one streaming task with its oracle sufficiency points: SynthMT / SynthQA generated here,
or (profile paper) a dataset through `datasets.load_dataset` with source, target and oracle columns."""
import statistics

from repro.core.io import atomic_write_json
from repro.core.stage import StageContext, main
from repro.papers.proactivellm import _synth as synth
from repro.papers.proactivellm._task import save_vocab

SPLITS = ("train", "validation", "test")


def words(value) -> list[str]:
    return value.split() if isinstance(value, str) else [str(w) for w in value]


def load_hub(source: dict):
    """Each split from `datasets.load_dataset(**load)[split]`, columns mapped to ours; words split on
    whitespace when a column holds text."""
    import datasets

    raw = datasets.load_dataset(**source["load"])
    cols, out = source["columns"], {}
    for ours, theirs in source["splits"].items():
        ds = raw[theirs]
        out[ours] = datasets.Dataset.from_dict({
            "source": [words(v) for v in ds[cols["source"]]],
            "target": [words(v) for v in ds[cols["target"]]],
            "oracle": [[int(x) for x in v] for v in ds[cols["oracle"]]]})
    return datasets.DatasetDict(out)


def run(ctx: StageContext) -> dict:
    p = ctx.params["data"]
    name = ctx.wildcards["task"]
    source = p[name]
    splits = load_hub(source) if source["kind"] == "hub" else synth.generate(source, ctx.seed)
    for split in SPLITS:
        for row in splits[split]:
            if len(row["oracle"]) != len(row["target"]) or not all(1 <= o <= len(row["source"]) for o in row["oracle"]):
                raise ValueError(f"{name}/{split}: oracle points must be 1..len(source), one per target word")
    splits.save_to_disk(str(ctx.out / "dataset"))
    meta = {"task": name, "tokenizer": p["tokenizer"], "sep_token": p["sep_token"]}
    if p["tokenizer"] == "words":
        meta["vocab_size"] = save_vocab(splits, ctx.out / "vocab.json")
    for split in SPLITS:
        ds = splits[split]
        meta[f"{split}_rows"] = len(ds)
        meta[f"{split}_source_words_mean"] = statistics.mean(map(len, ds["source"]))
        meta[f"{split}_target_words_mean"] = statistics.mean(map(len, ds["target"]))
    test = splits["test"]
    # how much of the source the first target word needs: the room an adaptive policy has
    meta["test_first_need_fraction"] = statistics.mean(o[0] / len(s) for o, s in zip(test["oracle"], test["source"]))
    atomic_write_json(ctx.out / "meta.json", meta)
    return meta


if __name__ == "__main__":
    main(run)
