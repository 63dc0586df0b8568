"""The query language of the corpus: predicates over a scene, their texts, their truth (the exact
relevance label), one-attribute hard negatives, and the minimal-pair groups of the reranker's
pre-training (one scene that satisfies a query and single-edit violators that do not).

Kinds:
- attribute: "a large red circle" (an object of that size, colour and shape);
- position: "a red circle on the left" (such an object in the left / right third, top / bottom third);
- colour_relation: "a red object left of a blue object" (scenes.relation between objects of two colours);
- relation: "a red circle left of a blue square" (between two colour-shape objects);
- count: "2 red objects" (exactly that many objects of the colour).
"""
from __future__ import annotations

import numpy as np

from repro.data.scenes import COLOURS, SHAPES, SIZES, relation, render, sample_scene

KINDS = ("attribute", "position", "colour_relation", "relation", "count")
SIDES = {"left": lambda o: o["x"] < 1 / 3, "right": lambda o: o["x"] > 2 / 3,
         "top": lambda o: o["y"] < 1 / 3, "bottom": lambda o: o["y"] > 2 / 3}
REL_TEXT = {"left": "left of", "right": "right of", "above": "above", "below": "below"}
VALUES = {"colour": tuple(COLOURS), "shape": SHAPES, "size": tuple(SIZES)}


def _is(o: dict, c: str, s: str) -> bool:
    return o["colour"] == c and o["shape"] == s


def holds(scene: list[dict], p: dict) -> bool:
    """The predicate's truth on a scene: the exact relevance label."""
    kind = p["kind"]
    if kind == "attribute":
        return any(_is(o, p["colour"], p["shape"]) and o["size"] == p["size"] for o in scene)
    if kind == "position":
        return any(_is(o, p["colour"], p["shape"]) and SIDES[p["side"]](o) for o in scene)
    if kind in ("relation", "colour_relation"):
        match = (lambda o, d: o["colour"] == d[0]) if kind == "colour_relation" else (lambda o, d: _is(o, *d))
        return any(match(a, p["a"]) and match(b, p["b"]) and relation(a, b) == p["rel"]
                   for i, a in enumerate(scene) for j, b in enumerate(scene) if i != j)
    if kind == "count":
        return sum(o["colour"] == p["colour"] for o in scene) == p["n"]
    raise ValueError(f"unknown query kind {kind!r} (expected one of {KINDS})")


def text(p: dict) -> str:
    kind = p["kind"]
    if kind == "attribute":
        return f"a {p['size']} {p['colour']} {p['shape']}"
    if kind == "position":
        return f"a {p['colour']} {p['shape']} on the {p['side']}"
    if kind == "colour_relation":
        return f"a {p['a'][0]} object {REL_TEXT[p['rel']]} a {p['b'][0]} object"
    if kind == "relation":
        return f"a {p['a'][0]} {p['a'][1]} {REL_TEXT[p['rel']]} a {p['b'][0]} {p['b'][1]}"
    return f"{p['n']} {p['colour']} objects"


def sample_predicate(rng: np.random.Generator, scene: list[dict], kind: str) -> dict | None:
    """A predicate of `kind` that the scene satisfies (None when it cannot: a relation needs two
    objects (of two colours, for a colour relation), a position an object in an outer third)."""
    o = scene[rng.integers(len(scene))]
    if kind == "attribute":
        return {"kind": kind, "size": o["size"], "colour": o["colour"], "shape": o["shape"]}
    if kind == "position":
        sides = [s for s, inside in SIDES.items() if inside(o)]
        return None if not sides else {"kind": kind, "colour": o["colour"], "shape": o["shape"],
                                       "side": sides[rng.integers(len(sides))]}
    if kind in ("relation", "colour_relation"):
        if len(scene) < 2:
            return None
        i, j = rng.choice(len(scene), size=2, replace=False)
        a, b = scene[i], scene[j]
        if kind == "colour_relation":
            return None if a["colour"] == b["colour"] else {"kind": kind, "a": [a["colour"]], "b": [b["colour"]],
                                                            "rel": relation(a, b)}
        return {"kind": kind, "a": [a["colour"], a["shape"]], "b": [b["colour"], b["shape"]], "rel": relation(a, b)}
    return {"kind": kind, "colour": o["colour"], "n": sum(x["colour"] == o["colour"] for x in scene)}


def hard_negative(rng: np.random.Generator, scene: list[dict], p: dict, tries: int = 50) -> list[dict] | None:
    """The scene with one attribute of one object changed so that the predicate fails (None if no
    such single change was found)."""
    for _ in range(tries):
        i, attr = rng.integers(len(scene)), list(VALUES)[rng.integers(3)]
        other = [v for v in VALUES[attr] if v != scene[i][attr]]
        edited = [dict(o) for o in scene]
        edited[i][attr] = other[rng.integers(len(other))]
        if not holds(edited, p):
            return edited
    return None


# ---------------------------------------------------------------- minimal-pair groups


def cell_of(o: dict, grid: int = 3) -> int:
    return min(int(o["y"] * grid), grid - 1) * grid + min(int(o["x"] * grid), grid - 1)


def _moved(o: dict, cell: int, grid: int = 3) -> dict:
    """The object moved to another cell, keeping its jitter inside the cell."""
    dx, dy = o["x"] - (cell_of(o, grid) % grid + 0.5) / grid, o["y"] - (cell_of(o, grid) // grid + 0.5) / grid
    return {**o, "x": (cell % grid + 0.5) / grid + dx, "y": (cell // grid + 0.5) / grid + dy}


def single_edits(scene: list[dict], grid: int = 3) -> list[list[dict]]:
    """Every scene one edit away: one attribute (colour, shape or size) of one object changed, one
    object moved to a free cell (its side changes), or two objects swapping places (a relation
    flips)."""
    out = []
    taken = {cell_of(o, grid) for o in scene}
    for i, o in enumerate(scene):
        for attr, values in VALUES.items():
            out += [[*scene[:i], {**o, attr: v}, *scene[i + 1:]] for v in values if v != o[attr]]
        out += [[*scene[:i], _moved(o, c, grid), *scene[i + 1:]] for c in range(grid * grid) if c not in taken]
        for j in range(i + 1, len(scene)):
            swapped = [dict(x) for x in scene]
            swapped[i], swapped[j] = _moved(o, cell_of(scene[j], grid), grid), _moved(scene[j], cell_of(o, grid), grid)
            out.append(swapped)
    return out


def minimal_group(rng: np.random.Generator, kind: str, violators: tuple[int, int],
                  objects: tuple[int, int]) -> tuple[dict, list[list[dict]]]:
    """(predicate, scenes) on a fresh scene: scenes[0] satisfies the predicate, the others (between
    `violators[0]` and `violators[1]` of them) are distinct single edits of it (`single_edits`)
    that do not."""
    while True:
        scene = sample_scene(rng, tuple(objects))
        p = sample_predicate(rng, scene, kind)
        if p is None:
            continue
        failing = [e for e in single_edits(scene) if not holds(e, p)]
        k = int(rng.integers(violators[0], violators[1] + 1))
        if len(failing) >= k:
            return p, [scene, *(failing[i] for i in rng.choice(len(failing), size=k, replace=False))]


def scene_pool(key: tuple[int, ...], n: int, objects: tuple[int, int], size: int) -> tuple[np.ndarray, list]:
    """n fresh scenes (never corpus documents) and their images uint8 [n, size, size, 3], a pure
    function of key."""
    rng = np.random.default_rng(key)
    scenes = [sample_scene(rng, tuple(objects)) for _ in range(n)]
    return np.stack([render(s, size, rng) for s in scenes]), scenes
