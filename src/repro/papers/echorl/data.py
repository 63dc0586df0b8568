"""Stage 1: the verifiable arithmetic task (generated here; hub datasets at `paper`)."""
import statistics

from repro.core.io import atomic_write_json
from repro.core.stage import StageContext, main
from repro.data.arithmetic import load_task, tokenizer_for


def run(ctx: StageContext) -> dict:
    p = ctx.params["data"]
    splits = load_task(p["source"], ctx.seed)
    splits.save_to_disk(str(ctx.out / "dataset"))
    tok = tokenizer_for(p["tokenizer"])
    meta = {"tokenizer": p["tokenizer"], "answer_pattern": p["answer_pattern"], "vocab_size": len(tok)}
    for name, ds in splits.items():
        meta[f"{name}_rows"] = len(ds)
        meta[f"{name}_prompt_tokens_mean"] = statistics.mean(len(tok.encode(x)) for x in ds["prompt"])
    atomic_write_json(ctx.out / "meta.json", meta)
    return meta


if __name__ == "__main__":
    main(run)
