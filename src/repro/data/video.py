"""Synthetic tracking videos (numpy only) and the crops single-object trackers train and test on.

A video: a textured target on a smooth random walk with scale and aspect drift, 1-3 distractors
that share its shape and pattern family (other colours), drawn above or below it, an optional
occluder that slides across the frame, and a textured background. Boxes are `[x, y, w, h]` in
pixels of the target's full extent (occluded or not) and always lie inside the frame. The same seed
gives the same video, so splits are reproducible without storing the generator's state.

Stored like a hub tracking set: one row per frame (`video`, `frame`, `image` uint8 HxWx3, `box`), a
`datasets.DatasetDict` of `train` / `test` (and `val` when the source asks for one), so the `paper`
profile swaps in `load_dataset(...)`.
Crops follow the usual convention: a square of side `factor * sqrt(w * h)` around the box centre,
resized bilinearly to `out` pixels and padded with the frame's mean colour outside the frame.
One-pass evaluation scores close the module, so every video paper scores tracks the same way, as
the pytracking / got10k (OTB, LaSOT) toolkits define them: every frame counts, frame 0 too (the
tracker reports the given box there), success AUC is the mean over IoU thresholds 0, 0.05, .., 1 of
the fraction of frames with IoU above the threshold, precision is the fraction of frames whose
centre error is at most N pixels, normalised precision the fraction whose centre error in units of
the ground truth's width and height is at most 0.2; per-sequence scores are averaged over sequences.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
from tqdm.auto import tqdm

PATTERNS = ("stripes", "checker", "rings", "blobs")


@dataclass(frozen=True)
class VideoSpec:
    frame_size: int = 128
    frames: int = 60
    target_size: tuple[float, float] = (14.0, 26.0)  # sqrt(w * h) range in pixels
    distractors: tuple[int, int] = (1, 3)
    occlusion: float = 0.5  # probability that a video has a sliding occluder
    max_speed: float = 3.0  # pixels per frame
    max_aspect: float = 0.4  # |log(w / h)| bound


# ---------------------------------------------------------------- appearance


def _smooth_field(rng: np.random.Generator, h: int, w: int, cells: int, channels: int = 3) -> np.ndarray:
    """Bilinearly upsampled random grid: a smooth texture in [0, 1]."""
    grid = rng.random((cells + 1, cells + 1, channels))
    ys = np.linspace(0, cells, h)
    xs = np.linspace(0, cells, w)
    y0 = np.minimum(ys.astype(int), cells - 1)
    x0 = np.minimum(xs.astype(int), cells - 1)
    fy = (ys - y0)[:, None, None]
    fx = (xs - x0)[None, :, None]
    top = grid[y0][:, x0] * (1 - fx) + grid[y0][:, x0 + 1] * fx
    bot = grid[y0 + 1][:, x0] * (1 - fx) + grid[y0 + 1][:, x0 + 1] * fx
    return top * (1 - fy) + bot * fy


def background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Low-contrast coarse colour field plus finer texture and pixel noise, float32 [0, 1]."""
    coarse = 0.25 + 0.5 * _smooth_field(rng, size, size, 4)
    fine = _smooth_field(rng, size, size, 16) - 0.5
    noise = rng.normal(0.0, 0.03, (size, size, 3))
    return np.clip(coarse + 0.25 * fine + noise, 0, 1).astype(np.float32)


def _pattern(rng: np.random.Generator, kind: str, res: int) -> np.ndarray:
    """A [res, res] map in [0, 1] of one pattern family with random frequency and orientation."""
    v, u = np.mgrid[0:res, 0:res] / res - 0.5
    freq = rng.uniform(2.0, 4.0)
    theta = rng.uniform(0, math.pi)
    along = u * math.cos(theta) + v * math.sin(theta)
    if kind == "stripes":
        return (np.sin(2 * math.pi * freq * along) > 0).astype(np.float32)
    if kind == "checker":
        across = -u * math.sin(theta) + v * math.cos(theta)
        return ((np.floor(freq * (along + 1)) + np.floor(freq * (across + 1))) % 2).astype(np.float32)
    if kind == "rings":
        return (np.sin(2 * math.pi * freq * np.hypot(u, v)) > 0).astype(np.float32)
    return (_smooth_field(rng, res, res, 3, 1)[..., 0] > 0.5).astype(np.float32)  # blobs


def appearance(rng: np.random.Generator, kind: str, shape: str, res: int = 32) -> dict:
    """A two-colour patterned object: texture [res, res, 3] and shape mask [res, res]."""
    a, b = rng.random(3), rng.random(3)
    while np.abs(a - b).sum() < 0.9:  # keep the two colours apart so the pattern is visible
        b = rng.random(3)
    pat = _pattern(rng, kind, res)[..., None]
    tex = (pat * a + (1 - pat) * b).astype(np.float32)
    v, u = np.mgrid[0:res, 0:res] / (res - 1) * 2 - 1
    mask = (u**2 + v**2 <= 1.0) if shape == "ellipse" else np.ones((res, res), bool)
    return {"texture": tex, "mask": mask}


# ---------------------------------------------------------------- motion


def trajectory(rng: np.random.Generator, spec: VideoSpec, frames: int, size: float | None = None) -> np.ndarray:
    """[frames, 4] boxes (x, y, w, h): momentum random walk of the centre, log-scale and log-aspect
    random walks, reflected at the frame borders so the whole box stays inside."""
    lo, hi = spec.target_size
    n = spec.frame_size
    log_s = math.log(size if size else rng.uniform(lo, hi))
    log_a = rng.uniform(-spec.max_aspect, spec.max_aspect) / 2
    s = math.exp(log_s)
    c = rng.uniform(s, n - s, 2)
    vel = rng.normal(0, spec.max_speed / 2, 2)
    out = np.zeros((frames, 4), np.float32)
    for t in range(frames):
        w = math.exp(log_s + log_a / 2)
        h = math.exp(log_s - log_a / 2)
        half = np.array([w, h]) / 2
        for k in range(2):  # reflect at the borders
            if c[k] < half[k]:
                c[k], vel[k] = 2 * half[k] - c[k], abs(vel[k])
            if c[k] > n - half[k]:
                c[k], vel[k] = 2 * (n - half[k]) - c[k], -abs(vel[k])
        c = np.clip(c, half, n - half)
        out[t] = [c[0] - w / 2, c[1] - h / 2, w, h]
        vel = 0.85 * vel + rng.normal(0, spec.max_speed / 4, 2)
        speed = np.hypot(*vel)
        if speed > spec.max_speed:
            vel *= spec.max_speed / speed
        c = c + vel
        log_s = float(np.clip(log_s + rng.normal(0, 0.03), math.log(lo), math.log(hi)))
        log_a = float(np.clip(log_a + rng.normal(0, 0.03), -spec.max_aspect, spec.max_aspect))
    return out


# ---------------------------------------------------------------- rendering


def paste(frame: np.ndarray, obj: dict, box: np.ndarray) -> None:
    """Draw an object's texture (nearest-neighbour resampled) into the pixels whose centres fall in box."""
    n = frame.shape[0]
    x, y, w, h = box
    x0, y0 = max(0, int(math.ceil(x - 0.5))), max(0, int(math.ceil(y - 0.5)))
    x1, y1 = min(n, int(math.ceil(x + w - 0.5))), min(n, int(math.ceil(y + h - 0.5)))
    if x1 <= x0 or y1 <= y0:
        return
    res = obj["texture"].shape[0]
    u = np.clip(((np.arange(x0, x1) + 0.5 - x) / w * res).astype(int), 0, res - 1)
    v = np.clip(((np.arange(y0, y1) + 0.5 - y) / h * res).astype(int), 0, res - 1)
    tex = obj["texture"][v][:, u]
    mask = obj["mask"][v][:, u]
    region = frame[y0:y1, x0:x1]
    region[mask] = tex[mask]


def render_video(seed: int | tuple[int, ...], spec: VideoSpec) -> tuple[np.ndarray, np.ndarray]:
    """(frames uint8 [T, H, W, 3], boxes float32 [T, 4]) of one video, a pure function of the seed."""
    rng = np.random.default_rng(seed)
    n, T = spec.frame_size, spec.frames
    bg = background(rng, n)
    kind = PATTERNS[rng.integers(len(PATTERNS))]
    shape = "ellipse" if rng.random() < 0.5 else "rect"
    target = appearance(rng, kind, shape)
    boxes = trajectory(rng, spec, T)
    layers = []  # (z, appearance, boxes); the target is z = 0
    for _ in range(rng.integers(spec.distractors[0], spec.distractors[1] + 1)):
        size = math.sqrt(boxes[0, 2] * boxes[0, 3]) * rng.uniform(0.8, 1.25)
        layers.append((rng.choice([-1, 1]), appearance(rng, kind, shape), trajectory(rng, spec, T, size)))
    if rng.random() < spec.occlusion:  # a background-textured bar crossing the frame
        side = boxes[0, 2:].mean() * rng.uniform(0.6, 1.2)
        bar = {"texture": background(rng, 32), "mask": np.ones((32, 32), bool)}
        start, end = rng.uniform(0, n, 2), rng.uniform(0, n, 2)
        path = np.linspace(start, end, T) - side / 2
        layers.append((2, bar, np.column_stack([path, np.full((T, 2), side)]).astype(np.float32)))
    layers.append((0, target, boxes))
    layers.sort(key=lambda layer: layer[0])
    frames = np.empty((T, n, n, 3), np.uint8)
    for t in range(T):
        frame = bg.copy()
        for _, obj, bxs in layers:
            paste(frame, obj, bxs[t])
        frames[t] = np.round(frame * 255).astype(np.uint8)
    return frames, boxes


def render_split(key: tuple[int, ...], videos: int, spec: VideoSpec):
    """A one-row-per-frame `datasets.Dataset` of `videos` videos seeded (*key, 0), (*key, 1), ..."""
    import datasets

    cols: dict[str, list] = {"video": [], "frame": [], "image": [], "box": []}
    for v in tqdm(range(videos), desc=f"render {key}", mininterval=5):
        frames, boxes = render_video((*key, v), spec)
        for t in range(len(frames)):
            cols["video"].append(v)
            cols["frame"].append(t)
            cols["image"].append(frames[t])
            cols["box"].append(boxes[t])
    n = spec.frame_size
    features = datasets.Features({"video": datasets.Value("int32"), "frame": datasets.Value("int32"),
                                  "image": datasets.Array3D((n, n, 3), "uint8"),
                                  "box": datasets.Sequence(datasets.Value("float32"), length=4)})
    return datasets.Dataset.from_dict(cols, features=features)


def load_video_set(source: dict, seed: int):
    """DatasetDict(train, test[, val]). `source.kind`: `synthetic` (rendered here, each split from
    disjoint seeds) or `hub` (`datasets.load_dataset(**source.load)`, splits named in the params).
    A `val` split exists only when the source names one (synthetic: `val`; hub: `val_split`)."""
    import datasets

    if source["kind"] == "synthetic":
        spec = VideoSpec(frame_size=source["frame_size"], target_size=tuple(source["target_size"]),
                         distractors=tuple(source["distractors"]), occlusion=source["occlusion"],
                         max_speed=source["max_speed"])
        splits = {}
        for code, name in enumerate(("train", "test", "val")):
            if name not in source:
                continue
            split = source[name]
            splits[name] = render_split((seed, code), split["videos"],
                                        VideoSpec(**{**spec.__dict__, "frames": split["frames"]}))
        return datasets.DatasetDict(splits)
    loaded = datasets.load_dataset(**source["load"])
    names = {"train": source.get("train_split", "train"), "test": source.get("test_split", "test")}
    if "val_split" in source:
        names["val"] = source["val_split"]
    return datasets.DatasetDict({split: loaded[name] for split, name in names.items()})


# ---------------------------------------------------------------- crops


def crop_window(box, factor: float) -> tuple[float, float, float]:
    """(x0, y0, side) of the square crop of side factor * sqrt(w * h) centred on the box."""
    x, y, w, h = (float(b) for b in box)
    side = factor * math.sqrt(max(w * h, 1e-6))
    return x + w / 2 - side / 2, y + h / 2 - side / 2, side


def crop(frame: np.ndarray, window: tuple[float, float, float], out: int) -> np.ndarray:
    """Bilinear crop of window (x0, y0, side) resized to [out, out, 3] float32 in [0, 1]; pixels
    outside the frame take the frame's mean colour (estimated on every 4th pixel: it is only padding)."""
    x0, y0, side = window
    H, W = frame.shape[:2]
    coords = (np.arange(out) + 0.5) * side / out - 0.5
    ys, xs = y0 + coords, x0 + coords
    yf, xf = np.floor(ys).astype(int), np.floor(xs).astype(int)
    wy, wx = (ys - yf)[:, None, None], (xs - xf)[None, :, None]
    ya, xa = np.stack([yf, yf + 1]), np.stack([xf, xf + 1])  # [2, out]: the two neighbours
    vals = frame[np.clip(ya, 0, H - 1)[:, None, :, None], np.clip(xa, 0, W - 1)[None, :, None, :]]
    vals = vals.astype(np.float32) / 255.0  # [2, 2, out, out, 3], only the sampled pixels
    if ys.min() < 0 or xs.min() < 0 or ys.max() > H - 1 or xs.max() > W - 1:
        inside = ((ya >= 0) & (ya < H))[:, None, :, None] & ((xa >= 0) & (xa < W))[None, :, None, :]
        vals = np.where(inside[..., None], vals, frame[::4, ::4].reshape(-1, frame.shape[2]).mean(0) / 255.0)
    top = vals[0, 0] * (1 - wx) + vals[0, 1] * wx
    bot = vals[1, 0] * (1 - wx) + vals[1, 1] * wx
    return (top * (1 - wy) + bot * wy).astype(np.float32)


def box_to_crop(box, window: tuple[float, float, float], out: int) -> np.ndarray:
    """A frame box expressed in crop pixels."""
    x0, y0, side = window
    s = out / side
    x, y, w, h = (float(b) for b in box)
    return np.array([(x - x0) * s, (y - y0) * s, w * s, h * s], np.float32)


def box_from_crop(box, window: tuple[float, float, float], out: int) -> np.ndarray:
    """A crop box (crop pixels) back in frame pixels."""
    x0, y0, side = window
    s = side / out
    x, y, w, h = (float(b) for b in box)
    return np.array([x * s + x0, y * s + y0, w * s, h * s], np.float32)


def jitter_window(rng: np.random.Generator, box, factor: float, center: float, scale: float):
    """Training jitter of a search crop: the centre moves by up to `center` x the target size in
    each direction and the side scales by exp(N(0, scale))."""
    x, y, w, h = (float(b) for b in box)
    size = math.sqrt(max(w * h, 1e-6))
    side = factor * size * math.exp(rng.normal(0, scale))
    cx = x + w / 2 + rng.uniform(-center, center) * size
    cy = y + h / 2 + rng.uniform(-center, center) * size
    return cx - side / 2, cy - side / 2, side


# ---------------------------------------------------------------- stored videos and training samples


class Videos:
    """A one-row-per-frame split (`video`, `frame`, `image`, `box`) grouped into videos.

    Works for the generated Arrow splits and for hub tracking sets loaded with `datasets` (images as
    arrays or PIL images). A video's frames are read together on first use and the most recent
    `cache` videos stay in memory (a training batch touches each frame three times on average).
    """

    def __init__(self, split, cache: int = 256):
        # uint8 explicitly: the numpy formatter would widen Array3D pixels to int64 (8x the memory)
        self.ds = split.with_format("numpy", columns=["image"], dtype=np.uint8)
        video = np.asarray(split["video"])
        frame = np.asarray(split["frame"])
        boxes = np.asarray(split["box"], dtype=np.float32)
        order = np.lexsort((frame, video))
        ids, starts = np.unique(video[order], return_index=True)
        ends = list(starts[1:]) + [len(order)]
        self.ids = list(ids)
        self.rows = [order[s:e] for s, e in zip(starts, ends)]
        self.boxes = [boxes[r] for r in self.rows]
        self.video = functools.lru_cache(maxsize=cache)(self._read_video)

    def __len__(self) -> int:
        return len(self.rows)

    def length(self, v: int) -> int:
        return len(self.rows[v])

    def _read_video(self, v: int) -> list[np.ndarray]:
        images = self.ds[self.rows[v].tolist()]["image"]
        return [np.asarray(im.convert("RGB") if hasattr(im, "convert") else im, dtype=np.uint8) for im in images]

    def frame(self, v: int, t: int) -> np.ndarray:
        return self.video(v)[t]


def training_sample(videos: Videos, rng: np.random.Generator, crops: dict) -> dict:
    """Static template, dynamic template and search crop of one video, within `max_gap` frames of
    the static template's frame; only the search crop is jittered. Boxes come in crop pixels."""
    v = int(rng.integers(len(videos)))
    T = videos.length(v)
    t0 = int(rng.integers(T))
    lo, hi = max(0, t0 - crops["max_gap"]), min(T, t0 + crops["max_gap"] + 1)
    td, ts = (int(t) for t in rng.integers(lo, hi, 2))
    boxes = videos.boxes[v]
    out = {}
    for name, t in (("static", t0), ("dynamic", td)):
        win = crop_window(boxes[t], crops["template_factor"])
        out[name] = crop(videos.frame(v, t), win, crops["template_size"])
        out[f"{name}_box"] = box_to_crop(boxes[t], win, crops["template_size"])
    win = jitter_window(rng, boxes[ts], crops["search_factor"], crops["center_jitter"], crops["scale_jitter"])
    out["search"] = crop(videos.frame(v, ts), win, crops["search_size"])
    out["search_box"] = box_to_crop(boxes[ts], win, crops["search_size"])
    return out


# ---------------------------------------------------------------- one-pass evaluation (OTB / LaSOT style)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of matching rows of two [N, 4] (x, y, w, h) arrays."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    iw = np.clip(np.minimum(a[:, 0] + a[:, 2], b[:, 0] + b[:, 2]) - np.maximum(a[:, 0], b[:, 0]), 0, None)
    ih = np.clip(np.minimum(a[:, 1] + a[:, 3], b[:, 1] + b[:, 3]) - np.maximum(a[:, 1], b[:, 1]), 0, None)
    inter = iw * ih
    union = a[:, 2] * a[:, 3] + b[:, 2] * b[:, 3] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def centre_error(pred: np.ndarray, gt: np.ndarray, normalised: bool = False) -> np.ndarray:
    """Distance between box centres in pixels, or in units of the ground-truth width / height."""
    pred, gt = np.asarray(pred, np.float64), np.asarray(gt, np.float64)
    d = (pred[:, :2] + pred[:, 2:] / 2) - (gt[:, :2] + gt[:, 2:] / 2)
    if normalised:
        d = d / np.maximum(gt[:, 2:], 1e-12)
    return np.hypot(d[:, 0], d[:, 1])


IOU_THRESHOLDS = np.linspace(0, 1, 21)  # success plot: fraction of frames with IoU > threshold
NORM_PRECISION_AT = 0.2  # normalised precision: centre error <= 0.2 of the ground truth's size


def sequence_scores(pred: np.ndarray, gt: np.ndarray, precision_px: float) -> dict:
    """One sequence's success curve and AUC, precision at `precision_px` and normalised precision at
    0.2, over every frame (frame 0 included, as the toolkits count it: the tracker reports the given
    box there)."""
    iou = box_iou(pred, gt)
    success = np.array([(iou > t).mean() for t in IOU_THRESHOLDS])
    return {"success": success, "auc": float(success.mean()),
            "precision": float((centre_error(pred, gt) <= precision_px).mean()),
            "norm_precision": float((centre_error(pred, gt, normalised=True) <= NORM_PRECISION_AT).mean()),
            "iou_mean": float(iou.mean())}


def dataset_scores(preds: list[np.ndarray], gts: list[np.ndarray], precision_px: float) -> dict:
    """Mean over sequences of every per-sequence score (each sequence weighs the same)."""
    per = [sequence_scores(p, g, precision_px) for p, g in zip(preds, gts)]
    return {"success": np.mean([s["success"] for s in per], 0).tolist(),
            **{k: float(np.mean([s[k] for s in per])) for k in ("auc", "precision", "norm_precision", "iou_mean")},
            "per_sequence_auc": [s["auc"] for s in per]}
