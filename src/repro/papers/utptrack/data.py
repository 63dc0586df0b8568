"""Stage 1: tracking videos, train and test splits (synthetic at CPU scale, a hub set at `paper`)."""
import numpy as np

from repro.core.stage import StageContext, main
from repro.data.video import load_video_set


def run(ctx: StageContext) -> dict:
    ds = load_video_set(ctx.params["data"]["source"], ctx.seed)
    ds.save_to_disk(str(ctx.out / "videos"))
    out = {}
    for name, split in ds.items():
        boxes = np.asarray(split["box"], dtype=np.float64)
        out[name] = {"videos": len(set(split["video"])), "frames": len(split),
                     "target_size_mean": float(np.sqrt(boxes[:, 2] * boxes[:, 3]).mean())}
    return out


if __name__ == "__main__":
    main(run)
