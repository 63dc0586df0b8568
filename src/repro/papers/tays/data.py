"""Stage 1: streaming videos with scripted events, per-second units and 4-way questions (synthetic
at CPU scale, a hub video-QA set at `paper`)."""
import numpy as np

from repro.core.stage import StageContext, main
from repro.data.events import SKIP, load_event_set
from repro.papers.tays.method import Codec


def run(ctx: StageContext) -> dict:
    d = ctx.params["data"]
    ds = load_event_set({**d["source"], "fps": d["fps"]}, ctx.seed)
    ds.save_to_disk(str(ctx.out / "videos"))
    codec = Codec(ctx.params["model"].get("tokenizer"))
    out = {}
    for name, split in ds.items():
        units = [u for row in split["units"] for u in row]
        out[name] = {"videos": len(split), "seconds_mean": float(np.mean(split["seconds"])),
                     "skip_share": float(np.mean([u == SKIP for u in units])),
                     # + 1: each unit's terminator
                     "unit_tokens_mean": float(np.mean([len(codec.encode(u)) + 1 for u in units])),
                     "kinds": {k: int(c) for k, c in zip(*np.unique(split["kind"], return_counts=True))},
                     "answers": {k: int(c) for k, c in zip(*np.unique(split["answer"], return_counts=True))}}
    return out


if __name__ == "__main__":
    main(run)
