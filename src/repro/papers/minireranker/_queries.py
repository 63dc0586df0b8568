"""The query language of the corpus: predicates over a scene (attribute, position, relation, count),
their texts, their truth (the exact relevance label), one-attribute hard negatives, and the
predicate questions of the reranker's VQA pre-training ("is there <query> ?" on fresh scenes)."""
from __future__ import annotations

import json

import numpy as np

from repro.data.scenes import COLOURS, SHAPES, SIZES, relation, render, sample_scene, to_dataset

KINDS = ("attribute", "position", "relation", "count")
SIDES = {"left": lambda o: o["x"] < 1 / 3, "right": lambda o: o["x"] > 2 / 3,
         "top": lambda o: o["y"] < 1 / 3, "bottom": lambda o: o["y"] > 2 / 3}
REL_TEXT = {"left": "left of", "right": "right of", "above": "above", "below": "below"}


def _is(o: dict, c: str, s: str) -> bool:
    return o["colour"] == c and o["shape"] == s


def holds(scene: list[dict], p: dict) -> bool:
    """The predicate's truth on a scene: the exact relevance label."""
    kind = p["kind"]
    if kind == "attribute":
        return any(_is(o, p["colour"], p["shape"]) and o["size"] == p["size"] for o in scene)
    if kind == "position":
        return any(_is(o, p["colour"], p["shape"]) and SIDES[p["side"]](o) for o in scene)
    if kind == "relation":
        return any(_is(a, *p["a"]) and _is(b, *p["b"]) and relation(a, b) == p["rel"]
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
    if kind == "relation":
        return f"a {p['a'][0]} {p['a'][1]} {REL_TEXT[p['rel']]} a {p['b'][0]} {p['b'][1]}"
    return f"{p['n']} {p['colour']} objects"


def sample_predicate(rng: np.random.Generator, scene: list[dict], kind: str) -> dict | None:
    """A predicate of `kind` that the scene satisfies (None when it cannot: a relation needs two
    objects, a position an object in an outer third)."""
    o = scene[rng.integers(len(scene))]
    if kind == "attribute":
        return {"kind": kind, "size": o["size"], "colour": o["colour"], "shape": o["shape"]}
    if kind == "position":
        sides = [s for s, inside in SIDES.items() if inside(o)]
        return None if not sides else {"kind": kind, "colour": o["colour"], "shape": o["shape"],
                                       "side": sides[rng.integers(len(sides))]}
    if kind == "relation":
        if len(scene) < 2:
            return None
        i, j = rng.choice(len(scene), size=2, replace=False)
        a, b = scene[i], scene[j]
        return {"kind": kind, "a": [a["colour"], a["shape"]], "b": [b["colour"], b["shape"]], "rel": relation(a, b)}
    return {"kind": kind, "colour": o["colour"], "n": sum(x["colour"] == o["colour"] for x in scene)}


def hard_negative(rng: np.random.Generator, scene: list[dict], p: dict, tries: int = 50) -> list[dict] | None:
    """The scene with one attribute of one object changed so that the predicate fails (None if no
    such single change was found)."""
    values = {"colour": list(COLOURS), "shape": list(SHAPES), "size": list(SIZES)}
    for _ in range(tries):
        i, attr = rng.integers(len(scene)), list(values)[rng.integers(3)]
        other = [v for v in values[attr] if v != scene[i][attr]]
        edited = [dict(o) for o in scene]
        edited[i][attr] = other[rng.integers(len(other))]
        if not holds(edited, p):
            return edited
    return None


def predicate_questions(key: tuple[int, ...], n: int, source: dict, held_out: set[str]):
    """n VQA rows (`repro.data.scenes` schema) on fresh scenes: "is there <query text> ?" -> yes / no,
    query kinds cycled, half of them true. A false row either asks about a predicate drawn from another
    scene or, with probability `source.hard`, shows the scene edited by one attribute so that the
    predicate fails (as the corpus's hard negatives). Texts in `held_out` (the validation and test
    queries) are never asked, so the reranker still meets those queries first at evaluation."""
    rng = np.random.default_rng(key)
    objects, size = tuple(source["objects"]), source["image_size"]

    def draw(kind: str) -> tuple[list[dict], dict]:
        while True:
            scene = sample_scene(rng, objects)
            p = sample_predicate(rng, scene, kind)
            if p is not None and text(p) not in held_out:
                return scene, p

    rows = []
    for i in range(n):
        kind = KINDS[i % len(KINDS)]
        scene, p = draw(kind)
        if rng.random() >= 0.5:  # a false row
            edited = hard_negative(rng, scene, p) if rng.random() < source["hard"] else None
            if edited is not None:
                scene = edited
            else:
                while holds(scene, p):
                    p = draw(kind)[1]
        rows.append({"image": render(scene, size, rng), "question": f"is there {text(p)} ?",
                     "answer": "yes" if holds(scene, p) else "no", "kind": f"query {kind}",
                     "scene": json.dumps(scene)})
    return to_dataset(rows, size)
