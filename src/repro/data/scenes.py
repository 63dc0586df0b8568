"""Synthetic scenes for the multimodal papers (hidrop, minireranker, tays), numpy only.

A scene: 1-4 objects, each a shape in a colour and a size at a centre (x, y) in [0, 1] image units,
drawn with `repro.data.video`'s helpers (`paste`) on a grey textured background, so colour belongs
to the objects only. The static generator places objects in distinct cells of a grid, so left/right
and above/below between two objects are unambiguous; a video paper moves the same objects by
changing their centres frame by frame and draws each frame with `render`.

Questions have single-token answers (a word-level vocabulary, `Vocab`):
- existence (POPE-like): "is there a red circle ?" -> yes / no; half the questions are negatives,
  and `adversarial` negatives share the colour or the shape of an object that is present;
- attribute: "what colour is the circle ?" / "what shape is the red object ?" (asked only when the
  description names one object) -> a colour / a shape;
- relation: "where is the red circle from the blue square ?" -> left / right / above / below (the
  larger of the two centre offsets);
- count: "how many circles are there ?" / "how many red objects are there ?" -> 0..4.
Every answer is computed from the scene (`answer`), never stored apart from it.

Stored like a hub VQA set: one row per question (`image` uint8 HxWx3, `question`, `answer`,
`kind`, `scene` as JSON), a `datasets.DatasetDict` of the splits in the source, so the `paper`
profile swaps in `load_dataset(...)` (`load_scene_set`).
"""
from __future__ import annotations

import json

import numpy as np

from repro.data.video import background, paste

COLOURS = {"red": (0.90, 0.12, 0.12), "green": (0.10, 0.75, 0.20), "blue": (0.15, 0.30, 0.95),
           "yellow": (0.95, 0.90, 0.10), "purple": (0.60, 0.15, 0.80), "cyan": (0.10, 0.85, 0.90)}
SHAPES = ("square", "circle", "triangle", "cross")
SIZES = {"small": 0.16, "large": 0.26}  # side as a share of the image side
KINDS = ("existence", "attribute", "relation", "count")
RELATIONS = ("left", "right", "above", "below")
SPECIAL = ("<pad>", "<bos>", "<eos>", "<image>", "<unk>")
WORDS = ("is", "there", "a", "an", "the", "what", "colour", "shape", "object", "objects", "where", "from",
         "how", "many", "are", "?", "yes", "no", "circles", "squares", "triangles", "crosses",
         *RELATIONS, *COLOURS, *SHAPES, *SIZES, *(str(n) for n in range(10)))
PLURAL = {"square": "squares", "circle": "circles", "triangle": "triangles", "cross": "crosses"}


class Vocab:
    """Word-level vocabulary: the special tokens, then the scene words, then `extra` words."""

    def __init__(self, extra: tuple[str, ...] = ()):
        self.words = list(dict.fromkeys((*SPECIAL, *WORDS, *extra)))
        self.index = {w: i for i, w in enumerate(self.words)}
        self.pad_id, self.bos_id, self.eos_id, self.image_id, self.unk_id = (self.index[w] for w in SPECIAL)

    def __len__(self) -> int:
        return len(self.words)

    def encode(self, text: str) -> list[int]:
        return [self.index.get(w, self.unk_id) for w in text.split()]

    def decode(self, ids) -> str:
        return " ".join(self.words[int(i)] for i in ids)


# ---------------------------------------------------------------- scenes and drawing


def sample_scene(rng: np.random.Generator, objects: tuple[int, int] = (1, 4), grid: int = 3) -> list[dict]:
    """1-4 objects in distinct cells of a grid x grid layout, jittered inside their cells."""
    n = int(rng.integers(objects[0], objects[1] + 1))
    cells = rng.choice(grid * grid, size=n, replace=False)
    scene = []
    for cell in cells:
        size = str(rng.choice(list(SIZES)))
        room = max(0.0, 1 / grid - SIZES[size]) / 2  # jitter that keeps the object inside its cell
        cx = (cell % grid + 0.5) / grid + rng.uniform(-room, room)
        cy = (cell // grid + 0.5) / grid + rng.uniform(-room, room)
        scene.append({"shape": str(rng.choice(SHAPES)), "colour": str(rng.choice(list(COLOURS))),
                      "size": size, "x": float(cx), "y": float(cy)})
    return scene


def shape_mask(shape: str, res: int = 32) -> np.ndarray:
    """Boolean [res, res] silhouette of a shape filling its box."""
    v, u = np.mgrid[0:res, 0:res] / (res - 1) * 2 - 1
    if shape == "circle":
        return u**2 + v**2 <= 1.0
    if shape == "triangle":  # apex up
        return (v >= -1) & (np.abs(u) <= (v + 1) / 2)
    if shape == "cross":
        return (np.abs(u) <= 0.3) | (np.abs(v) <= 0.3)
    if shape == "square":
        return np.ones((res, res), bool)
    raise ValueError(f"unknown shape {shape!r} (expected one of {SHAPES})")


def render(scene: list[dict], size: int, rng: np.random.Generator) -> np.ndarray:
    """uint8 [size, size, 3]: a grey textured background (from rng) and the scene's objects."""
    return draw(backdrop(size, rng), scene)


def backdrop(size: int, rng: np.random.Generator) -> np.ndarray:
    """The grey textured background of `render`, float [size, size, 3]."""
    return background(rng, size).mean(axis=2, keepdims=True).repeat(3, axis=2) * 0.6 + 0.2


def draw(base: np.ndarray, scene: list[dict]) -> np.ndarray:
    """uint8: the scene's objects drawn on a copy of a `backdrop` (scenes that differ by one edit
    share theirs)."""
    frame, size = base.copy(), base.shape[0]
    for obj in scene:
        side = SIZES[obj["size"]] * size
        colour = np.asarray(COLOURS[obj["colour"]], np.float32)
        look = {"texture": np.broadcast_to(colour, (32, 32, 3)), "mask": shape_mask(obj["shape"])}
        paste(frame, look, np.array([obj["x"] * size - side / 2, obj["y"] * size - side / 2, side, side]))
    return np.round(np.clip(frame, 0, 1) * 255).astype(np.uint8)


# ---------------------------------------------------------------- questions


def describe(obj: dict) -> str:
    return f"{obj['colour']} {obj['shape']}"


def relation(a: dict, b: dict) -> str:
    """Where a is from b: the larger of the horizontal and vertical centre offsets."""
    dx, dy = a["x"] - b["x"], a["y"] - b["y"]
    if abs(dx) >= abs(dy):
        return "left" if dx < 0 else "right"
    return "above" if dy < 0 else "below"


def answer(scene: list[dict], q: dict) -> str:
    """The answer to a structured question {kind, ...} on a scene."""
    kind = q["kind"]
    if kind == "existence":
        return "yes" if any(o["colour"] == q["colour"] and o["shape"] == q["shape"] for o in scene) else "no"
    if kind == "attribute":
        (obj,) = [o for o in scene if o.get(q["by"]) == q["value"]]
        return obj[q["ask"]]
    if kind == "relation":
        return relation(scene[q["a"]], scene[q["b"]])
    if kind == "count":
        return str(sum(o[q["by"]] == q["value"] for o in scene))
    raise ValueError(f"unknown question kind {kind!r} (expected one of {KINDS})")


def question_text(scene: list[dict], q: dict) -> str:
    kind = q["kind"]
    if kind == "existence":
        return f"is there a {q['colour']} {q['shape']} ?"
    if kind == "attribute":
        return f"what colour is the {q['value']} ?" if q["ask"] == "colour" else f"what shape is the {q['value']} object ?"
    if kind == "relation":
        return f"where is the {describe(scene[q['a']])} from the {describe(scene[q['b']])} ?"
    noun = PLURAL[q["value"]] if q["by"] == "shape" else f"{q['value']} objects"
    return f"how many {noun} are there ?"


def sample_question(rng: np.random.Generator, scene: list[dict], kind: str, adversarial: float = 0.5) -> dict | None:
    """A structured question of `kind` about the scene, or None when the scene cannot ask one
    (a relation needs two objects, an attribute question an object that its description singles out)."""
    if kind == "existence":
        if rng.random() < 0.5:
            obj = scene[rng.integers(len(scene))]
            return {"kind": kind, "colour": obj["colour"], "shape": obj["shape"]}
        present = {(o["colour"], o["shape"]) for o in scene}
        absent = [(c, s) for c in COLOURS for s in SHAPES if (c, s) not in present]
        near = [(c, s) for c, s in absent if any(c == pc or s == ps for pc, ps in present)]
        pool = near if near and rng.random() < adversarial else absent
        c, s = pool[rng.integers(len(pool))]
        return {"kind": kind, "colour": c, "shape": s}
    if kind == "attribute":
        ask = "colour" if rng.random() < 0.5 else "shape"
        by = "shape" if ask == "colour" else "colour"
        unique = [o[by] for o in scene if sum(p[by] == o[by] for p in scene) == 1]
        return None if not unique else {"kind": kind, "ask": ask, "by": by, "value": unique[rng.integers(len(unique))]}
    if kind == "relation":
        if len(scene) < 2:
            return None
        a, b = rng.choice(len(scene), size=2, replace=False)
        return {"kind": kind, "a": int(a), "b": int(b)}
    if kind == "count":
        by = "shape" if rng.random() < 0.5 else "colour"
        pool = SHAPES if by == "shape" else tuple(COLOURS)
        return {"kind": kind, "by": by, "value": str(pool[rng.integers(len(pool))])}
    raise ValueError(f"unknown question kind {kind!r} (expected one of {KINDS})")


def sample_item(rng: np.random.Generator, kind: str, objects: tuple[int, int], size: int, adversarial: float) -> dict:
    """One VQA row: a scene that can ask `kind`, its image, the question text and the answer."""
    while True:
        scene = sample_scene(rng, objects)
        q = sample_question(rng, scene, kind, adversarial)
        if q is not None:
            break
    return {"image": render(scene, size, rng), "question": question_text(scene, q), "answer": answer(scene, q),
            "kind": kind, "scene": json.dumps(scene)}


# ---------------------------------------------------------------- datasets


def render_split(key: tuple[int, ...], n: int, source: dict):
    """A `datasets.Dataset` of n rows, question kinds in equal shares (cycled), a pure function of key."""
    rng = np.random.default_rng(key)
    kinds = source.get("kinds", list(KINDS))
    rows = [sample_item(rng, kinds[i % len(kinds)], tuple(source["objects"]), source["image_size"],
                        source.get("adversarial", 0.5)) for i in range(n)]
    return to_dataset(rows, source["image_size"])


def to_dataset(rows: list[dict], s: int):
    """VQA rows (image, question, answer, kind, scene) of s x s images -> a `datasets.Dataset`."""
    import datasets

    features = datasets.Features({"image": datasets.Array3D((s, s, 3), "uint8"), "question": datasets.Value("string"),
                                  "answer": datasets.Value("string"), "kind": datasets.Value("string"),
                                  "scene": datasets.Value("string")})
    return datasets.Dataset.from_dict({k: [r[k] for r in rows] for k in features}, features=features)


def load_scene_set(source: dict, seed: int):
    """DatasetDict of the splits `source.splits` names ({split: rows}). `source.kind`: `synthetic`
    (rendered here, each split from its own seed stream) or `hub` (`datasets.load_dataset(**source.load)`,
    with `source.splits` mapping our split names to the hub's)."""
    import datasets

    if source["kind"] == "synthetic":
        return datasets.DatasetDict({name: render_split((seed, code), rows, source)
                                     for code, (name, rows) in enumerate(source["splits"].items())})
    loaded = datasets.load_dataset(**source["load"])
    return datasets.DatasetDict({name: loaded[theirs] for name, theirs in source["splits"].items()})


def images_to_tensor(images) -> torch.Tensor:  # noqa: F821 (torch is imported lazily)
    """uint8 [B, H, W, 3] (numpy, list or tensor) -> float [B, 3, H, W] in [-1, 1]."""
    import torch

    x = torch.as_tensor(np.asarray(images), dtype=torch.float32)
    return (x.permute(0, 3, 1, 2) / 127.5 - 1.0).contiguous()

