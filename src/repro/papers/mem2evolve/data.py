"""Stage 1: the task stream (generated here; a prepared task file through `datasets.load_dataset`
at `paper`): stream, held-out and transfer splits, each task with visible examples and hidden tests."""
import collections

from repro.core.io import atomic_write_json
from repro.core.stage import StageContext, main
from repro.data.programs import load_tasks


def run(ctx: StageContext) -> dict:
    splits = load_tasks(ctx.params["data"]["source"], ctx.seed)
    splits.save_to_disk(str(ctx.out / "dataset"))
    meta = {}
    for name, ds in splits.items():
        meta[name] = {"tasks": len(ds), "categories": dict(sorted(collections.Counter(ds["category"]).items())),
                      "depth": {str(k): v for k, v in sorted(collections.Counter(ds["depth"]).items())}}
    atomic_write_json(ctx.out / "meta.json", meta)
    return meta


if __name__ == "__main__":
    main(run)
