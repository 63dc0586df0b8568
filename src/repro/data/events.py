"""Streaming videos with scripted events, per-second reasoning units and 4-way questions (tays).

A video is the scene world of `repro.data.scenes` in motion: 1-2 objects (distinct colour-shape
pairs) on a fixed grey textured background, each static or drifting at constant speed, and 1-3
scripted events at distinct seconds (never the first): an object appears, disappears, changes
colour, stops or turns back. Every frame is drawn with `scenes.render` from the frame's state (the
objects then visible, with their centres); the background is drawn from the video's own seed, so it
is the same in every frame (a static camera).

Per-second reasoning units (`units`) are computed from the frame states alone, unit g from the
frames of seconds 0..g only (`unit_at`), by diffing the last frame of second g against the last
frame of second g-1 and the motion between consecutive frames: never from the script or a future
frame. Unit 0 lists the objects in view (reading order); a later unit describes what changed ("red circle stops",
"blue square turns green") or is `<skip>`. The holistic target of the batch baseline rewrites the
non-skip units into one evidence text, each change stamped with its second ("at 3 red circle stops").

Questions are 4-way multiple choice (options a-d, the answer a letter): what happens to an object
(its one event), what happens after an event (the next event), how many objects appear. Stored like a
hub video-QA set, one row per video (`frames` uint8 [F, H, W, 3], `question`, `options`, `answer`,
`units`, `holistic`, `events` as JSON, `seconds`, `fps`), a `datasets.DatasetDict`, so the `paper`
profile swaps in `load_dataset(...)` (`load_event_set`).
"""
from __future__ import annotations

import json

import numpy as np

from repro.data import scenes

EVENTS = ("appear", "disappear", "recolour", "stop", "reverse")
QUESTIONS = ("what_happens", "after", "how_many")
LETTERS = ("a", "b", "c", "d")
SKIP = "<skip>"
WORDS = ("appears", "disappears", "turns", "stops", "back", "happens", "to", "after", "at", ",", SKIP,
         "appear", "question", "describe", "each", "second", "then", "answer", "system", ":", *LETTERS)
DRIFT = 0.6  # the farthest a drifting object's centre travels over a video, in image sides


def _verb(event: dict) -> str:
    kind = event["kind"]
    if kind == "recolour":
        return f"turns {event['to']}"
    return {"appear": "appears", "disappear": "disappears", "stop": "stops", "reverse": "turns back"}[kind]


# ---------------------------------------------------------------- the script and the frame states


def script(rng: np.random.Generator, seconds: int, events: tuple[int, int], kinds: tuple[str, ...] = EVENTS,
           drift: float = 0.6) -> dict:
    """Initial objects (id, shape, colour, size, centre, velocity per second) and the scripted events
    (second, frame offset within the second as a fraction, kind, object id): each event's kind is
    drawn among those of `kinds` the scene allows then; an object drifts with chance `drift`."""
    pairs = [(c, s) for c in scenes.COLOURS for s in scenes.SHAPES]
    order = rng.permutation(len(pairs))
    fresh = iter(pairs[i] for i in order)  # colour-shape pairs never reused in a video
    cells = list(rng.permutation(9))
    speed = DRIFT / seconds  # per second: it never reaches the border, so no stop goes unscripted

    def new_object(oid: int, moving: bool) -> dict:
        colour, shape = next(fresh)
        cell = int(cells.pop())
        x, y = (cell % 3 + 0.5) / 3, (cell // 3 + 0.5) / 3
        v = [0.0, 0.0]
        axes = [a for a in (0, 1) if (x, y)[a] != 0.5]  # the centre row/column has no room to drift
        if moving and axes:  # towards the centre along one axis: 0.6 of the side over the video at most
            a = axes[int(rng.integers(len(axes)))]
            v[a] = speed if (x, y)[a] < 0.5 else -speed
        return {"id": oid, "shape": shape, "colour": colour, "size": "large", "x": x, "y": y,
                "vx": v[0], "vy": v[1]}

    objects = [new_object(i, moving=bool(rng.random() < drift)) for i in range(int(rng.integers(1, 3)))]
    n_events = int(rng.integers(events[0], events[1] + 1))
    seconds_with_event = sorted(rng.choice(np.arange(1, seconds), size=min(n_events, seconds - 1), replace=False))
    present = {o["id"]: o for o in objects}
    moving = {o["id"] for o in objects if o["vx"] or o["vy"]}
    colours = {o["id"]: o["colour"] for o in objects}
    track = {o["id"]: [o["x"], o["y"], o["vx"], o["vy"], 0] for o in objects}  # centre, velocity, since
    since = {o["id"]: -2 for o in objects}  # second an object appeared in

    def settled(oid: int, sec: int) -> bool:  # in view through the whole previous second: its motion was seen
        return since[oid] <= sec - 2

    def where(oid: int, sec: int) -> np.ndarray:
        x, y, vx, vy, t0 = track[oid]
        return np.array([x + vx * (sec - t0), y + vy * (sec - t0)])

    def can_reverse(oid: int, sec: int) -> bool:  # turned back, it must stay in view to the end
        end = where(oid, sec) - np.array(track[oid][2:4]) * (seconds - sec)
        return bool(np.all((end > 0.12) & (end < 0.88)))

    out = []
    for sec in seconds_with_event:
        options = ["appear"] + (["disappear", "recolour"] if len(present) > 1 else ["recolour"])
        options += ["stop"] if any(settled(i, sec) for i in moving) else []
        options += ["reverse"] if any(can_reverse(i, sec) and settled(i, sec) for i in moving) else []
        options = [k for k in options if k in kinds]
        if not options:  # nothing of the allowed kinds can happen now: the second stays quiet
            continue
        kind = str(rng.choice(options))
        ev = {"second": int(sec), "at": float(rng.random()), "kind": kind}
        if kind == "appear":
            obj = new_object(len(colours), moving=bool(rng.random() < drift))
            ev["object"] = obj
            present[obj["id"]], colours[obj["id"]] = obj, obj["colour"]
            if obj["vx"] or obj["vy"]:
                moving.add(obj["id"])
            track[obj["id"]] = [obj["x"], obj["y"], obj["vx"], obj["vy"], sec]
            since[obj["id"]] = sec
            ev["id"] = obj["id"]
        else:
            pool = {"stop": sorted(i for i in moving if settled(i, sec)),
                    "reverse": sorted(i for i in moving if can_reverse(i, sec) and settled(i, sec))}.get(kind, sorted(present))
            oid = int(pool[rng.integers(len(pool))])
            ev["id"] = oid
            if kind == "disappear":
                present.pop(oid)
                moving.discard(oid)
            elif kind == "stop":
                moving.discard(oid)
            elif kind == "reverse":
                x, y = where(oid, sec)
                track[oid] = [x, y, -track[oid][2], -track[oid][3], sec]
            elif kind == "recolour":
                shape = present[oid]["shape"]
                used = {(colours[i], present[i]["shape"]) for i in present}
                choices = [c for c in scenes.COLOURS if c != colours[oid] and (c, shape) not in used]
                ev["to"] = str(choices[rng.integers(len(choices))])
                colours[oid] = ev["to"]
        out.append(ev)
    return {"objects": objects, "events": out}


def frame_states(plan: dict, seconds: int, fps: int) -> list[list[dict]]:
    """The objects in view in every frame (seconds x fps frames), positions integrated frame by frame."""
    live = {o["id"]: dict(o) for o in plan["objects"]}
    by_frame = {}
    for ev in plan["events"]:
        by_frame.setdefault(ev["second"] * fps + min(int(ev["at"] * fps), fps - 1), []).append(ev)
    states = []
    for f in range(seconds * fps):
        for ev in by_frame.get(f, []):
            if ev["kind"] == "appear":
                live[ev["id"]] = dict(ev["object"])
            elif ev["kind"] == "disappear":
                live.pop(ev["id"])
            elif ev["kind"] == "recolour":
                live[ev["id"]]["colour"] = ev["to"]
            elif ev["kind"] == "stop":
                live[ev["id"]]["vx"] = live[ev["id"]]["vy"] = 0.0
            else:
                live[ev["id"]]["vx"] *= -1
                live[ev["id"]]["vy"] *= -1
        if f:  # move (the frame an event happens in already shows its effect on the motion)
            for o in live.values():
                o["x"] = float(np.clip(o["x"] + o["vx"] / fps, 0.1, 0.9))
                o["y"] = float(np.clip(o["y"] + o["vy"] / fps, 0.1, 0.9))
        states.append([{k: o[k] for k in ("id", "shape", "colour", "size", "x", "y")} for o in live.values()])
    return states


# ---------------------------------------------------------------- per-second units from what was seen


def _motion(states: list[list[dict]], f: int) -> dict[int, tuple[float, float]]:
    """Displacement of each object between frame f-1 and frame f (objects in both)."""
    before = {o["id"]: o for o in states[f - 1]} if f else {}
    return {o["id"]: (o["x"] - before[o["id"]]["x"], o["y"] - before[o["id"]]["y"])
            for o in states[f] if o["id"] in before}


def in_view(state: list[dict]) -> str:
    """The objects of a frame state in reading order (top to bottom, then left to right): unit 0."""
    return " , ".join(scenes.describe(o) for o in sorted(state, key=lambda o: (round(o["y"], 6), round(o["x"], 6))))


def stills(rng: np.random.Generator, n: int, source: dict) -> list[dict]:
    """`n` one-second still clips ({"frames": fps frames, "caption": `in_view`}) of 1-4 objects at cell
    centres on a backdrop, drawn like a video's first second: what a perception (captioning)
    pre-training reads."""
    pairs = [(c, s) for c in scenes.COLOURS for s in scenes.SHAPES]
    out = []
    for _ in range(n):
        k = int(rng.integers(1, 5))
        cells = rng.choice(9, size=k, replace=False)
        state = [{"id": i, "shape": pairs[j][1], "colour": pairs[j][0], "size": "large",
                  "x": (int(c) % 3 + 0.5) / 3, "y": (int(c) // 3 + 0.5) / 3}
                 for i, (j, c) in enumerate(zip(rng.choice(len(pairs), size=k, replace=False), cells))]
        frame = scenes.render(state, source["image_size"], np.random.default_rng(int(rng.integers(2**31))))
        out.append({"frames": np.stack([frame] * source["fps"]), "caption": in_view(state)})
    return out


def unit_at(seen: list[list[dict]], fps: int) -> str:
    """The unit of the last second of `seen` (the frame states of seconds 0..g, nothing later)."""
    g = len(seen) // fps - 1
    if len(seen) % fps or g < 0:
        raise ValueError(f"unit_at needs whole seconds of frames, got {len(seen)} frames at {fps} fps")
    now = {o["id"]: o for o in seen[-1]}
    if g == 0:
        return in_view(seen[-1])
    last = (g * fps) - 1  # last frame of the previous second
    before = {o["id"]: o for o in seen[last]}
    said = []
    for oid, o in now.items():
        if oid not in before:
            said.append(f"{scenes.describe(o)} appears")
        elif o["colour"] != before[oid]["colour"]:
            said.append(f"{scenes.describe(before[oid])} turns {o['colour']}")
    said += [f"{scenes.describe(o)} disappears" for oid, o in before.items() if oid not in now]
    # motion: the displacement into the previous second's last frame against the one into this one's
    was, now_m = _motion(seen, last), _motion(seen, len(seen) - 1)
    for oid, (dx, dy) in now_m.items():
        if oid not in was or oid not in before or before[oid]["colour"] != now[oid]["colour"]:
            continue
        px, py = was[oid]
        if (abs(px) + abs(py)) > 1e-9 and abs(dx) + abs(dy) < 1e-9:
            said.append(f"{scenes.describe(now[oid])} stops")
        elif px * dx + py * dy < -1e-12:
            said.append(f"{scenes.describe(now[oid])} turns back")
    return " , ".join(said) if said else SKIP


def units(states: list[list[dict]], fps: int) -> list[str]:
    """One unit per second, unit g computed from frames of seconds 0..g only."""
    return [unit_at(states[: (g + 1) * fps], fps) for g in range(len(states) // fps)]


def holistic(unit_texts: list[str]) -> str:
    """The batch baseline's holistic evidence: the non-skip units, each stamped with its second."""
    return " , ".join(f"at {g} {u}" for g, u in enumerate(unit_texts) if u != SKIP)


# ---------------------------------------------------------------- questions
# Balanced by construction: the four options are drawn first (as templates), the right one uniformly
# among them, and the script is then redrawn until the video makes it true. Given the options, every
# one is equally likely to be right, so no prior over option texts beats chance (0.25) without the
# video. A recolour fills two templates ("turns <colour>"), so with appear, disappear and recolour the
# four options are one template each.
TEMPLATES = {"appear": ("appears",), "disappear": ("disappears",), "recolour": ("turns *", "turns *"),
             "stop": ("stops",), "reverse": ("turns back",)}
COUNTS = ("0", "1", "2", "3")
MAX_TRIES = 10_000


def want(rng: np.random.Generator, kind: str, kinds: tuple[str, ...], events: tuple[int, int]) -> dict:
    """The options a question of `kind` will offer (templates) and which is right, drawn before the
    video: four templates out of those of the allowed event kinds (a count: 0-3, the right one uniform
    over what `events` scripted events allow)."""
    if kind == "how_many":
        return {"options": list(COUNTS), "right": int(rng.integers(min(3, events[1]) + 1))}
    if kind not in QUESTIONS:
        raise ValueError(f"unknown question kind {kind!r} (expected one of {QUESTIONS})")
    pool = [(k, t) for k in kinds for t in TEMPLATES[k]]
    if len(pool) < 4:
        raise ValueError(f"event kinds {list(kinds)} give {len(pool)} answer templates; a 4-way question needs 4")
    picks = [pool[i] for i in rng.choice(len(pool), size=4, replace=False)]
    return {"options": picks, "right": int(rng.integers(4))}


def colour_at(plan: dict, oid: int, second: int) -> str:
    """An object's colour just before `second` (as the unit of that second names it)."""
    first = next((o for o in plan["objects"] if o["id"] == oid), None)
    colour = first["colour"] if first else next(e["object"]["colour"] for e in plan["events"]
                                                if e["kind"] == "appear" and e["id"] == oid)
    for ev in plan["events"]:
        if ev["kind"] == "recolour" and ev["id"] == oid and ev["second"] < second:
            colour = ev["to"]
    return colour


def _shape(plan: dict, oid: int) -> str:
    objects = {o["id"]: o for o in plan["objects"]}
    objects.update({e["id"]: e["object"] for e in plan["events"] if e["kind"] == "appear"})
    return objects[oid]["shape"]


def _fill(rng: np.random.Generator, w: dict, ev: dict, colour: str) -> list[str]:
    """The option verbs of templates `w` for an event `ev` (the right one) of an object of `colour`:
    every "turns *" gets a distinct colour other than the object's, the right one the event's."""
    taken = {colour, ev.get("to")}
    out = []
    for j, (_, template) in enumerate(w["options"]):
        if template != "turns *":
            out.append(template)
        elif j == w["right"]:
            out.append(f"turns {ev['to']}")
        else:
            free = [c for c in scenes.COLOURS if c not in taken]
            c = free[rng.integers(len(free))]
            taken.add(c)
            out.append(f"turns {c}")
    return out


def question(rng: np.random.Generator, plan: dict, kind: str, w: dict) -> tuple[str, list[str], str] | None:
    """(question text, four option texts, answer letter) realising the drawn options `w` (`want`), or
    None when this video's script cannot make w's right option true. Objects are named with the colour
    they have just before the event in question (what the per-second unit says)."""
    events = plan["events"]
    named = lambda ev: f"{colour_at(plan, ev['id'], ev['second'])} {_shape(plan, ev['id'])}"  # noqa: E731
    letter = LETTERS[w["right"]]
    if kind == "how_many":
        n = sum(ev["kind"] == "appear" for ev in events)
        if n != w["right"]:
            return None
        return "how many objects appear ?", list(w["options"]), letter
    right_kind = w["options"][w["right"]][0]
    if kind == "what_happens":
        counts = {}
        for ev in events:
            counts[ev["id"]] = counts.get(ev["id"], 0) + 1
        pool = [ev for ev in events if counts[ev["id"]] == 1 and ev["kind"] == right_kind]
        if not pool:
            return None
        ev = pool[rng.integers(len(pool))]
        return f"what happens to the {named(ev)} ?", _fill(rng, w, ev, colour_at(plan, ev["id"], ev["second"])), letter
    # the next event is another object's: about the same object, an option could be ruled out from the
    # question alone ("after the blue square appears": "blue square appears")
    pool = [i for i in range(len(events) - 1) if events[i + 1]["kind"] == right_kind
            and events[i + 1]["id"] != events[i]["id"]]
    if not pool:
        return None
    i = pool[rng.integers(len(pool))]
    first, nxt = events[i], events[i + 1]
    verbs = _fill(rng, w, nxt, colour_at(plan, nxt["id"], nxt["second"]))
    return (f"what happens after the {named(first)} {_verb(first)} ?", [f"{named(nxt)} {v}" for v in verbs], letter)


# ---------------------------------------------------------------- videos and datasets


def sample_video(rng: np.random.Generator, kind: str, source: dict) -> dict:
    """One row: a question of `kind` with its options drawn first (`want`), then a video whose script
    makes the drawn right option true (scripts redrawn until one does), its frames and units.
    `source`: fps, image_size, seconds and events (ranges), event_kinds (default all of EVENTS),
    drift (the chance an object drifts, default 0.6)."""
    fps, size = source["fps"], source["image_size"]
    kinds, drift = tuple(source.get("event_kinds", EVENTS)), source.get("drift", 0.6)
    w = want(rng, kind, kinds, tuple(source["events"]))
    for _ in range(MAX_TRIES):
        seconds = int(rng.integers(source["seconds"][0], source["seconds"][1] + 1))
        plan = script(rng, seconds, tuple(source["events"]), kinds, drift)
        q = question(rng, plan, kind, w)
        if q is not None:
            break
    else:
        raise ValueError(f"no script of {source['seconds']} s with {source['events']} events of kinds {list(kinds)} "
                         f"(drift {drift}) realises a {kind!r} question answered {w['options'][w['right']]!r}")
    states = frame_states(plan, seconds, fps)
    bg_seed = int(rng.integers(2**31))  # the same background in every frame
    frames = np.stack([scenes.render(s, size, np.random.default_rng(bg_seed)) for s in states])
    unit_texts = units(states, fps)
    text, options, letter = q
    return {"frames": frames, "question": text, "options": options, "answer": letter, "kind": kind,
            "units": unit_texts, "holistic": holistic(unit_texts), "events": json.dumps(plan["events"]),
            "seconds": seconds, "fps": fps}


def render_split(key: tuple[int, ...], n: int, source: dict):
    """A `datasets.Dataset` of n videos, question kinds in equal shares (cycled), a pure function of key."""
    import datasets

    rng = np.random.default_rng(key)
    kinds = source.get("kinds", list(QUESTIONS))
    rows = [sample_video(rng, kinds[i % len(kinds)], source) for i in range(n)]
    s = source["image_size"]
    features = datasets.Features({
        "frames": datasets.Array4D((None, s, s, 3), "uint8"), "question": datasets.Value("string"),
        "options": datasets.Sequence(datasets.Value("string")), "answer": datasets.Value("string"),
        "kind": datasets.Value("string"), "units": datasets.Sequence(datasets.Value("string")),
        "holistic": datasets.Value("string"), "events": datasets.Value("string"),
        "seconds": datasets.Value("int32"), "fps": datasets.Value("int32")})
    return datasets.Dataset.from_dict({k: [r[k] for r in rows] for k in features}, features=features)


def load_event_set(source: dict, seed: int):
    """DatasetDict of the splits `source.splits` names ({split: rows}): `synthetic` (rendered here, each
    split from its own seed stream) or `hub` (`datasets.load_dataset(**source.load)`, `source.splits`
    mapping our split names to the hub's)."""
    import datasets

    if source["kind"] == "synthetic":
        return datasets.DatasetDict({name: render_split((seed, code), rows, source)
                                     for code, (name, rows) in enumerate(source["splits"].items())})
    loaded = datasets.load_dataset(**source["load"])
    return datasets.DatasetDict({name: loaded[theirs] for name, theirs in source["splits"].items()})
