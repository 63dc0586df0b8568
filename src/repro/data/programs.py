"""Programmatic tasks over a small typed DSL: a stream of tasks whose solutions are compositions.

A program is a sequence of unary DSL functions applied left to right (`["evens", "sort"]` keeps the
even numbers, then sorts them). Values are JSON-able: `L` list of ints, `I` int, `S` text, `D` an ISO
date, `G` a grid path over N/E/S/W. Every function is total (an empty list's head is 0), so any
well-typed program runs on any input of its type.

A task belongs to a category (its input and output type and its building blocks, the `motifs`); its
target program chains 1-3 motifs, so tasks of one category share sub-programs of 1-3 functions. Each
task shows a few input/output examples (`visible`) and keeps `hidden` tests for scoring: Pass@1 =
the one submitted program passes every hidden test. Rows are `datasets` tables (values JSON-encoded);
the target program is stored for the analysis only (depth, motifs) and is never shown to a solver.
"""
from __future__ import annotations

import datetime as dt
import json
import random
from typing import Callable

BIG = 10**6  # values are clamped to +-BIG so squaring chains stay cheap and total

_DIRS = {"N": (0, 1), "E": (1, 0), "S": (0, -1), "W": (-1, 0)}
_OPP = {"N": "S", "S": "N", "E": "W", "W": "E"}
_CW = {"N": "E", "E": "S", "S": "W", "W": "N"}
_VOWELS = set("aeiou")


def _c(x: int) -> int:
    return max(-BIG, min(BIG, x))


def _date(f: Callable[[dt.date], dt.date]) -> Callable[[str], str]:
    return lambda s: f(dt.date.fromisoformat(s)).isoformat()


def _month_end(d: dt.date) -> dt.date:
    return (d.replace(day=28) + dt.timedelta(days=4)).replace(day=1) - dt.timedelta(days=1)


def _next_month(d: dt.date) -> dt.date:
    first = _month_end(d) + dt.timedelta(days=1)
    return first.replace(day=min(d.day, _month_end(first).day))


def _simplify(p: str) -> str:
    out = []
    for c in p:  # cancel a move followed by its opposite
        if out and out[-1] == _OPP[c]:
            out.pop()
        else:
            out.append(c)
    return "".join(out)


def _end(p: str) -> tuple[int, int]:
    return sum(_DIRS[c][0] for c in p), sum(_DIRS[c][1] for c in p)


def _dedup(s: str) -> str:
    seen, out = set(), []
    for c in s:
        if c not in seen:
            seen.add(c)
            out.append(c)
    return "".join(out)


# name -> (input type, output type, function)
PRIMITIVES: dict[str, tuple[str, str, Callable]] = {
    # lists of ints
    "sort": ("L", "L", sorted), "rev": ("L", "L", lambda xs: xs[::-1]),
    "uniq": ("L", "L", lambda xs: list(dict.fromkeys(xs))),
    "evens": ("L", "L", lambda xs: [x for x in xs if x % 2 == 0]),
    "odds": ("L", "L", lambda xs: [x for x in xs if x % 2]),
    "pos": ("L", "L", lambda xs: [x for x in xs if x > 0]),
    "dbl": ("L", "L", lambda xs: [_c(2 * x) for x in xs]), "inc": ("L", "L", lambda xs: [_c(x + 1) for x in xs]),
    "sq": ("L", "L", lambda xs: [_c(x * x) for x in xs]), "neg": ("L", "L", lambda xs: [-x for x in xs]),
    "absl": ("L", "L", lambda xs: [abs(x) for x in xs]),
    "cumsum": ("L", "L", lambda xs: [_c(sum(xs[:i + 1])) for i in range(len(xs))]),
    "tail": ("L", "L", lambda xs: xs[1:]), "init": ("L", "L", lambda xs: xs[:-1]),
    "sum": ("L", "I", lambda xs: _c(sum(xs))), "len": ("L", "I", len),
    "max": ("L", "I", lambda xs: max(xs, default=0)), "min": ("L", "I", lambda xs: min(xs, default=0)),
    "head": ("L", "I", lambda xs: xs[0] if xs else 0), "last": ("L", "I", lambda xs: xs[-1] if xs else 0),
    # ints: arithmetic and unit factors
    "add1": ("I", "I", lambda x: _c(x + 1)), "sub1": ("I", "I", lambda x: _c(x - 1)),
    "twice": ("I", "I", lambda x: _c(2 * x)), "halve": ("I", "I", lambda x: x // 2),
    "square": ("I", "I", lambda x: _c(x * x)), "mod10": ("I", "I", lambda x: x % 10),
    "negate": ("I", "I", lambda x: -x), "x10": ("I", "I", lambda x: _c(10 * x)),
    "x12": ("I", "I", lambda x: _c(12 * x)), "x24": ("I", "I", lambda x: _c(24 * x)),
    "x60": ("I", "I", lambda x: _c(60 * x)), "div60": ("I", "I", lambda x: x // 60),
    "x1000": ("I", "I", lambda x: _c(1000 * x)),
    "digits": ("I", "L", lambda x: [int(c) for c in str(abs(x))]),
    # text
    "upper": ("S", "S", str.upper), "lower": ("S", "S", str.lower), "srev": ("S", "S", lambda s: s[::-1]),
    "sortc": ("S", "S", lambda s: "".join(sorted(s))), "dedup": ("S", "S", _dedup),
    "vowels": ("S", "S", lambda s: "".join(c for c in s if c.lower() in _VOWELS)),
    "cons": ("S", "S", lambda s: "".join(c for c in s if c.lower() not in _VOWELS)),
    "first": ("S", "S", lambda s: s.split(" ")[0]), "lastw": ("S", "S", lambda s: s.split(" ")[-1]),
    "title": ("S", "S", str.title), "nospace": ("S", "S", lambda s: s.replace(" ", "")),
    "slen": ("S", "I", len), "nvow": ("S", "I", lambda s: sum(c.lower() in _VOWELS for c in s)),
    "nwords": ("S", "I", lambda s: len(s.split(" "))),
    "ords": ("S", "L", lambda s: [ord(c) - 96 for c in s if c.isalpha()]),
    # dates
    "nextday": ("D", "D", _date(lambda d: d + dt.timedelta(days=1))),
    "prevday": ("D", "D", _date(lambda d: d - dt.timedelta(days=1))),
    "nextweek": ("D", "D", _date(lambda d: d + dt.timedelta(days=7))),
    "monthstart": ("D", "D", _date(lambda d: d.replace(day=1))),
    "monthend": ("D", "D", _date(_month_end)), "nextmonth": ("D", "D", _date(_next_month)),
    "weekday": ("D", "I", lambda s: dt.date.fromisoformat(s).weekday()),
    "day": ("D", "I", lambda s: dt.date.fromisoformat(s).day),
    "month": ("D", "I", lambda s: dt.date.fromisoformat(s).month),
    "doy": ("D", "I", lambda s: dt.date.fromisoformat(s).timetuple().tm_yday),
    # grid paths
    "simplify": ("G", "G", _simplify), "rotate": ("G", "G", lambda p: "".join(_CW[c] for c in p)),
    "mirror": ("G", "G", lambda p: p.translate(str.maketrans("EW", "WE"))),
    "back": ("G", "G", lambda p: "".join(_OPP[c] for c in reversed(p))),
    "dist": ("G", "I", lambda p: sum(map(abs, _end(p)))), "nsteps": ("G", "I", len),
    "east": ("G", "I", lambda p: _end(p)[0]), "north": ("G", "I", lambda p: _end(p)[1]),
}
TYPES = {"L": "a list of integers", "I": "an integer", "S": "a text", "D": "a date (ISO)", "G": "a grid path (N/E/S/W)"}

# Categories: input and output type, and the motifs (sub-programs) their target programs chain.
CATEGORIES: dict[str, dict] = {
    "lists": {"in": "L", "out": "L", "motifs": [
        ["evens", "sort"], ["uniq", "rev"], ["pos", "dbl"], ["sq", "sort"], ["absl", "uniq"],
        ["tail", "cumsum"], ["neg", "sort"], ["odds", "inc"], ["sort"], ["rev"], ["init", "absl", "sort"]]},
    "list_stats": {"in": "L", "out": "I", "motifs": [
        ["evens", "sort"], ["pos", "dbl"], ["absl", "uniq"], ["tail", "cumsum"], ["sq", "sort"],
        ["sum"], ["max"], ["len"], ["head"], ["twice", "add1"], ["mod10"]]},
    "strings": {"in": "S", "out": "S", "motifs": [
        ["lower", "sortc"], ["cons", "srev"], ["first", "upper"], ["nospace", "dedup"], ["title"],
        ["vowels", "upper"], ["lastw", "srev"], ["dedup"], ["srev"]]},
    "arithmetic": {"in": "I", "out": "I", "motifs": [
        ["twice", "add1"], ["square", "mod10"], ["digits", "sum"], ["halve", "sub1"], ["x10", "add1"],
        ["negate"], ["add1"], ["digits", "max"], ["square"]]},
    "dates": {"in": "D", "out": "I", "motifs": [
        ["nextmonth", "monthstart"], ["nextweek", "nextday"], ["monthend"], ["prevday"],
        ["weekday"], ["day"], ["doy"], ["month"], ["twice", "add1"], ["mod10"]]},
    "units": {"in": "I", "out": "I", "motifs": [
        ["x60", "x60"], ["x24", "x60"], ["x12"], ["x1000"], ["div60"], ["x10", "x12"], ["div60", "div60"],
        ["add1"], ["halve"]]},
    "grid": {"in": "G", "out": "I", "motifs": [
        ["simplify", "rotate"], ["back", "mirror"], ["rotate", "rotate"], ["simplify"], ["mirror"],
        ["dist"], ["east"], ["north"], ["nsteps"], ["twice", "add1"], ["negate"]]},
}


def types_of(name: str) -> tuple[str, str]:
    return PRIMITIVES[name][0], PRIMITIVES[name][1]


def well_typed(program: list[str], t_in: str, t_out: str | None = None) -> bool:
    t = t_in
    for name in program:
        if name not in PRIMITIVES or PRIMITIVES[name][0] != t:
            return False
        t = PRIMITIVES[name][1]
    return t_out is None or t == t_out


def execute(program, value):
    """Run a sequence of primitive names on one value."""
    for name in program:
        value = PRIMITIVES[name][2](value)
    return value


def trace(program, value) -> list:
    """The value before each function and after the last: len(program) + 1 values."""
    out = [value]
    for name in program:
        out.append(PRIMITIVES[name][2](out[-1]))
    return out


def sample_input(t: str, rng: random.Random):
    if t == "L":
        return [rng.randint(-9, 9) for _ in range(rng.randint(3, 7))]
    if t == "I":
        return rng.randint(1, 99)
    if t == "S":
        return " ".join("".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 6)))
                        for _ in range(rng.randint(1, 3)))
    if t == "D":
        return (dt.date(2000, 1, 1) + dt.timedelta(days=rng.randrange(11000))).isoformat()
    if t == "G":
        return "".join(rng.choice("NESW") for _ in range(rng.randint(4, 10)))
    raise ValueError(f"unknown type {t!r}; expected one of {sorted(TYPES)}")


def probe_inputs(t: str, n: int, seed: int = 12345) -> list:
    """Fixed inputs, drawn apart from every task, on which two programs count as equivalent when
    they agree (deduplication of tools)."""
    rng = random.Random(f"probe-{t}-{seed}")
    return [sample_input(t, rng) for _ in range(n)]


def chain(motifs: list[list[str]], category: dict, n: int, rng: random.Random) -> list[str] | None:
    """A random well-typed chain of n motifs from the category's input to its output type."""
    for _ in range(200):
        picks = [rng.choice(motifs) for _ in range(n)]
        prog = [f for m in picks for f in m]
        if len({tuple(m) for m in picks}) == n and well_typed(prog, category["in"], category["out"]):
            return prog
    return None


def redundant(prog: list[str], inputs: list, outputs: list) -> bool:
    """Whether deleting one or two consecutive functions leaves a well-typed program with the same
    outputs: then the target's depth overstates what a solver must find."""
    t_in, t_out = PRIMITIVES[prog[0]][0], PRIMITIVES[prog[-1]][1]
    cuts = [prog[:i] + prog[i + w:] for w in (1, 2) for i in range(len(prog) - w + 1)]
    return any(c and well_typed(c, t_in, t_out) and [execute(c, x) for x in inputs] == outputs for c in cuts)


def make_task(name: str, category: dict, motifs_per_task: list[float], visible: int, hidden: int,
              rng: random.Random, seen: set) -> dict:
    """One task: a target chaining 1..len(motifs_per_task) motifs (drawn with those weights), visible
    examples and hidden tests on fresh inputs. Targets whose outputs are constant, equal the input,
    repeat an earlier task's behaviour or survive cutting a step (`redundant`) are redrawn."""
    while True:
        n = rng.choices(range(1, len(motifs_per_task) + 1), weights=motifs_per_task)[0]
        prog = chain(category["motifs"], category, n, rng)
        if prog is None:
            continue
        inputs = [sample_input(category["in"], rng) for _ in range(visible + hidden)]
        outputs = [execute(prog, x) for x in inputs]
        key = (name, json.dumps(outputs))
        if len({json.dumps(o) for o in outputs}) < 3 or outputs == inputs or key in seen or redundant(prog, inputs, outputs):
            continue
        seen.add(key)
        return {"category": name, "in_type": category["in"], "out_type": category["out"],
                "description": f"{name}: from {TYPES[category['in']]} to {TYPES[category['out']]}",
                "visible": json.dumps([[x, y] for x, y in zip(inputs[:visible], outputs[:visible])]),
                "hidden": json.dumps([[x, y] for x, y in zip(inputs[visible:], outputs[visible:])]),
                "program": json.dumps(prog), "depth": len(prog), "motifs": n}


def generate_tasks(source: dict, seed: int) -> dict:
    """{split: rows}: `stream` (the stream's categories, interleaved), `heldout` (the same categories,
    never in the stream) and `transfer` (categories absent from the stream)."""
    rng, seen = random.Random(seed), set()
    splits = {"stream": (source["stream_categories"], source["stream_per_category"]),
              "heldout": (source["stream_categories"], source["heldout_per_category"]),
              "transfer": (source["transfer_categories"], source["transfer_per_category"])}
    out = {}
    for split, (names, per) in splits.items():
        rows = [make_task(c, CATEGORIES[c], source["motifs_per_task"], source["visible"], source["hidden"], rng, seen)
                for _ in range(per) for c in names]
        out[split] = [{"task_id": f"{split}-{i:04d}", **r} for i, r in enumerate(rows)]
    return out


def load_tasks(source: dict, seed: int):
    """DatasetDict of the task splits: generated here, or read with `datasets.load_dataset` (a prepared
    task file, hub or local) with a `split` column naming each row's split."""
    import datasets

    if source["kind"] == "generated":
        rows = generate_tasks(source, seed)
        return datasets.DatasetDict({k: datasets.Dataset.from_list(v) for k, v in rows.items()})
    ds = datasets.load_dataset(**source["load"])[source.get("split", "train")]
    return datasets.DatasetDict({s: ds.filter(lambda r, s=s: r["split"] == s).remove_columns("split")
                                 for s in ("stream", "heldout", "transfer")})
