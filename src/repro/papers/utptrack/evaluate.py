"""Stage 4: track every test sequence from its first box to its end, for one (variant, seed): the
variant's tracker fine-tuned with that seed, and the same pruning applied training-free to the
un-pruned baseline fine-tuned with the same seed (for the variants `training_free` lists). Scores are
kept per sequence (the items that the analysis pairs across variants), and the tokens each block
processed are counted in the forward. A tracker that never moves is scored too (the regimes' floor).

One-pass evaluation: the static template is cut from frame 0 and the dynamic template starts as a
copy of it; every `update_interval` frames, when the peak of the Hann-windowed response exceeds
`update_threshold`, the dynamic template is re-cut around the current prediction. Sequences run in
lockstep as one batch (pruning selects per sample), which changes nothing but the speed.
"""
import numpy as np
import torch
from tqdm.auto import tqdm

from repro.core.io import atomic_write_json
from repro.core.stage import StageContext, main
from repro.data.video import Videos, box_from_crop, box_to_crop, crop, crop_window, dataset_scores
from repro.papers.utptrack._fit import inputs, load_split
from repro.papers.utptrack.method import load_tracker, macs, tokens_pruned, variant_pruning

TRACE_KEYS = ("in", "out", "search", "static", "dynamic")


def clip_box(box: np.ndarray, size: tuple[int, int], margin: float) -> np.ndarray:
    """Keep at least `margin` pixels of the box inside the frame, and its sides at least `margin`."""
    H, W = size
    x1, y1 = min(max(0.0, box[0]), W - margin), min(max(0.0, box[1]), H - margin)
    x2, y2 = min(max(margin, box[0] + box[2]), W), min(max(margin, box[1] + box[3]), H)
    return np.array([x1, y1, max(margin, x2 - x1), max(margin, y2 - y1)], np.float32)


def mean_trace(seen: list[tuple[int, np.ndarray]]) -> list[dict]:
    """Per block, tokens per tracked frame as the forward passes processed them: `seen` holds, per
    forward, its batch size and a [blocks, 5] array of (attention tokens, MLP tokens, search, static
    and dynamic tokens left after the block)."""
    frames = sum(b for b, _ in seen)
    total = sum(b * rows for b, rows in seen) / frames
    return [dict(zip(TRACE_KEYS, map(float, row))) for row in total]


@torch.no_grad()
def track(model, videos: Videos, crops: dict, ev: dict) -> tuple[list[np.ndarray], int, list[dict]]:
    """Predicted boxes [T, 4] per video, the number of dynamic-template updates, and the tokens each
    block processed per frame (mean_trace)."""
    model.eval()
    n = len(videos)
    state = [videos.boxes[v][0].copy() for v in range(n)]
    preds = [[s.copy()] for s in state]
    templates = []
    for v in range(n):
        win = crop_window(state[v], crops["template_factor"])
        templates.append((crop(videos.frame(v, 0), win, crops["template_size"]),
                          box_to_crop(state[v], win, crops["template_size"])))
    static, dynamic = list(templates), list(templates)
    updates, seen = 0, []
    for t in tqdm(range(1, max(videos.length(v) for v in range(n))), desc="track", mininterval=5):
        live = [v for v in range(n) if t < videos.length(v)]
        frames = {v: videos.frame(v, t) for v in live}
        wins = {v: crop_window(state[v], crops["search_factor"]) for v in live}
        search = [crop(frames[v], wins[v], crops["search_size"]) for v in live]
        x = inputs(model, [static[v][0] for v in live], [dynamic[v][0] for v in live], search,
                   [static[v][1] for v in live], [dynamic[v][1] for v in live])
        out = model(**x)
        boxes, conf = model.boxes(out)
        seen.append((len(live), np.array([(a, m, *c) for (a, m), c in zip(out.processed, out.counts)])))
        for i, v in enumerate(live):
            cx, cy, w, h = (boxes[i] * crops["search_size"]).tolist()
            frame_box = box_from_crop([cx - w / 2, cy - h / 2, w, h], wins[v], crops["search_size"])
            state[v] = clip_box(frame_box, frames[v].shape[:2], ev["clip_margin"])
            preds[v].append(state[v].copy())
            if t % ev["update_interval"] == 0 and conf[i].item() > ev["update_threshold"]:
                win = crop_window(state[v], crops["template_factor"])
                dynamic[v] = (crop(frames[v], win, crops["template_size"]),
                              box_to_crop(state[v], win, crops["template_size"]))
                updates += 1
    return [np.stack(p) for p in preds], updates, mean_trace(seen)


def evaluate(model, videos: Videos, crops: dict, ev: dict) -> tuple[dict, list]:
    preds, updates, trace = track(model, videos, crops, ev)
    scores = dataset_scores(preds, videos.boxes, ev["precision_px"])
    nx, nz = model.gx**2, model.gz**2
    return {**scores, "template_updates": updates, "tokens_pruned": tokens_pruned(trace), "token_trace": trace,
            "tokens_in": {"search": nx, "template": nz},
            "macs": macs(trace, model.vit.config, nx, nz, model.head_channels)}, preds


def trivial(videos: Videos, precision_px: float) -> dict:
    """Scores of a tracker that never moves: frame 0's box on every frame (the regime's floor)."""
    preds = [np.repeat(b[:1], len(b), 0) for b in videos.boxes]
    return dataset_scores(preds, videos.boxes, precision_px)


def run(ctx: StageContext) -> dict:
    p, name, seed = ctx.params, ctx.wildcards["variant"], int(ctx.wildcards["seed"])
    videos = load_split(ctx.inputs["data"], "test")
    out, boxes = {"variant": name, "seed": seed, "trivial": trivial(videos, p["evaluate"]["precision_px"])}, {}
    modes = {"finetuned": ctx.inputs["model"]}
    if name in p["evaluate"]["training_free"]:  # the same pruning on the seed's un-pruned baseline
        modes["training_free"] = ctx.inputs["baseline"]
    for mode, folder in modes.items():
        model = load_tracker(folder / "model")
        model.pruning = variant_pruning(model, p["variants"], name)
        out[mode], preds = evaluate(model, videos, p["crops"], p["evaluate"])
        out["keep"] = dict(model.pruning.keep)
        boxes[mode] = [b.tolist() for b in preds]
    atomic_write_json(ctx.out / "boxes.json", {"pred": boxes, "gt": [b.tolist() for b in videos.boxes]})
    return out


if __name__ == "__main__":
    main(run)
