"""Stage 1: the scene VQA splits (synthetic here; a hub VQA set through `datasets.load_dataset` at
`paper`), stored with `save_to_disk`."""
from collections import Counter

from repro.core.stage import StageContext, main
from repro.data.scenes import load_scene_set


def run(ctx: StageContext) -> dict:
    ds = load_scene_set(ctx.params["data"]["source"], ctx.seed)
    ds.save_to_disk(str(ctx.out / "scenes"))
    return {name: {"rows": len(split), "kinds": dict(Counter(split["kind"])),
                   "answers": len(set(split["answer"]))} for name, split in ds.items()}


if __name__ == "__main__":
    main(run)
