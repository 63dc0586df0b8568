"""Mem2Evolve's mechanism: an agent whose Experience Memory and Asset Memory evolve together.

Forward (solve one task from its description and visible examples only):
1. Plan: the task's signature (category, input and output type) is what the description gives.
2. Recruit assets: up to `tools_per_task` active tools (named DSL compositions) that fit the types,
   ranked by the Asset Memory's own record: the tool's wins under this category plus a bonus for its
   home category (asset metadata: every arm with assets ranks the same way).
3. Execute: stochastic program search over primitives + recruited tools. Programs are sampled token
   by token, well-typed by construction, from a prior: uniform without experience, else the
   experience's bigram / unigram counts of what worked in the category (tool tokens included: this is
   how experience guides the use of assets) with a global back-off, and a length prior that failures
   shift towards longer programs. The first program that reproduces every visible example is
   submitted, less the steps it does not need on them; without one, the best partial program is.
Backward (reads the trajectory and the visible examples, never a hidden test):
4. Evolve Asset Memory: record which tools were tried / won / failed (per category) and demote tools
   that keep failing; after a success, log the solution and propose it as a tool, with every
   sub-composition of it that recurs in the memory's earlier verified solutions (mining belongs to the
   Asset Memory, so every arm with assets mines). A proposal is kept only if it passes tests generated
   from the visible examples (the values the solution computes on them) and behaves unlike every
   primitive and active tool on fixed probe inputs (deduplication). Tools are created here, after a
   verified solution, not during recruitment (declared deviation): before a task is solved no
   composition has tests from its visible examples to pass.
5. Evolve Experience Memory: a success generalises into counts of its program's tokens; a failure
   is diagnosed (length shift, partial credit for the best candidate's tokens).
Every memory item keeps its provenance (the stream task it came from), which the leak audit checks.
Expert agents (the paper's agent bank) are not modelled: this reproduction scopes Asset Memory to tools.
"""
from __future__ import annotations

import json
import random
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from repro.data.programs import PRIMITIVES, execute, probe_inputs, trace, well_typed

START = "^"


@dataclass
class Task:
    """What the agent sees of a task: no hidden test, no target program."""
    task_id: str
    category: str
    in_type: str
    out_type: str
    description: str
    visible: list  # [[input, output], ...]


@dataclass
class Trajectory:
    task_id: str
    category: str
    solved: bool  # on the visible examples: the agent's own evaluation
    program: list[str]  # tokens (primitives and tool names) of the submitted program
    expanded: list[str]  # the same program in primitives
    score: float  # share of visible examples it reproduces
    evaluated: int  # unique candidates run
    tried_tools: set[str] = field(default_factory=set)


@dataclass
class Tool:
    name: str
    body: tuple[str, ...]  # primitives
    in_type: str
    out_type: str
    category: str  # of the task that created it (its home category)
    created: int  # stream position
    source: str = ""  # the task whose verified solution it was cut from
    span: tuple[int, int] = (0, 0)  # its place in that solution (expanded)
    tries: int = 0
    wins: int = 0
    fails: int = 0
    wins_in: dict[str, int] = field(default_factory=dict)  # category -> wins there (asset metadata)
    active: bool = True


def types_of(body) -> tuple[str, str]:
    return PRIMITIVES[body[0]][0], PRIMITIVES[body[-1]][1]


def reachable() -> dict[str, set[str]]:
    """type -> the types some program maps it to (itself included)."""
    edges = defaultdict(set)
    for t_in, t_out, _ in PRIMITIVES.values():
        edges[t_in].add(t_out)
    out = {}
    for t in {v[0] for v in PRIMITIVES.values()}:
        seen, todo = {t}, [t]
        while todo:
            for u in edges[todo.pop()] - seen:
                seen.add(u)
                todo.append(u)
        out[t] = seen
    return out


REACH = reachable()


def passes(program, tests) -> bool:
    """A non-empty program that maps every test input to its expected output."""
    return bool(program) and bool(tests) and all(execute(program, x) == y for x, y in tests)


class AssetMemory:
    """Tools: created from verified solutions (the whole one and its recurring parts), deduplicated by
    behaviour, ranked by their record per category, demoted when unreliable."""

    def __init__(self, min_len: int, max_len: int, probes: int, demote_after: int, demote_below: float,
                 min_support: int = 2, home_bonus: float = 0.5):
        self.min_len, self.max_len, self.min_support, self.home_bonus = min_len, max_len, min_support, home_bonus
        self.demote_after, self.demote_below = demote_after, demote_below
        self.probes = {t: probe_inputs(t, probes) for t in REACH}
        self.tools: dict[str, Tool] = {}
        self.solutions: dict[str, tuple[str, ...]] = {}  # task_id -> verified solution (expanded)
        self.keys = {self.behaviour((p,)): p for p in PRIMITIVES}  # behaviour -> primitive / active tool
        self.log = Counter()  # proposals by outcome

    def behaviour(self, body) -> tuple:
        t_in = PRIMITIVES[body[0]][0]
        return t_in, tuple(json.dumps(execute(body, x)) for x in self.probes[t_in])

    def propose(self, body, tests, category: str, step: int, source: str = "",
                span: tuple[int, int] = (0, 0)) -> tuple[Tool | None, str]:
        """Keep `body` as a new tool if it is long enough, passes `tests` ([[input, expected]]) and is
        no duplicate; returns (the tool or None, the reason)."""
        body, tool = tuple(body), None
        if not self.min_len <= len(body) <= self.max_len:
            reason = "length"
        elif not passes(body, tests):
            reason = "fails its tests"
        elif self.behaviour(body) in self.keys:
            reason = "duplicate"
        else:
            tool = Tool(f"T{len(self.tools)}", body, *types_of(body), category, step, source, span)
            self.tools[tool.name] = tool
            self.keys[self.behaviour(body)] = tool.name
            reason = "kept"
        self.log[reason] += 1
        return tool, reason

    def active(self) -> list[Tool]:
        return [t for t in self.tools.values() if t.active]

    def score(self, tool: Tool, category: str) -> float:
        """The tool's wins under this category, plus a bonus for its home category."""
        return tool.wins_in.get(category, 0) + (self.home_bonus if tool.category == category else 0.0)

    def recruit(self, t_in: str, t_out: str, category: str, k: int) -> list[Tool]:
        """Up to k active tools that can start a program from t_in or end one at t_out (and lie on a
        path between them), best `score` for the category first (newest on ties)."""
        fit = [t for t in self.active() if (t.in_type == t_in or t.out_type == t_out)
               and t.in_type in REACH[t_in] and t_out in REACH[t.out_type]]
        return sorted(fit, key=lambda t: (self.score(t, category), t.created), reverse=True)[:k]

    def record(self, traj: Trajectory) -> list[str]:
        """Tries (in some candidate), wins and fails (in the submitted program of a task solved / left
        unsolved on its visible examples); demotes tools whose wins / (wins + fails) falls below
        `demote_below` once they failed `demote_after` times; returns them."""
        demoted = []
        for name in sorted(traj.tried_tools):  # sorted: the demoted list does not depend on hash order
            tool = self.tools[name]
            tool.tries += 1
            if name in traj.program:
                tool.wins += traj.solved
                tool.fails += not traj.solved
                if traj.solved:
                    tool.wins_in[traj.category] = tool.wins_in.get(traj.category, 0) + 1
            if tool.active and tool.fails >= self.demote_after and tool.wins / (tool.wins + tool.fails) < self.demote_below:
                tool.active = False
                del self.keys[self.behaviour(tool.body)]
                demoted.append(name)
        return demoted

    def support(self, body: tuple[str, ...]) -> int:
        """Verified solutions (any category) that contain `body` as a contiguous part."""
        n = len(body)
        return sum(any(s[i:i + n] == body for i in range(len(s) - n + 1)) for s in self.solutions.values())

    def candidates(self, task: Task, expanded: list[str]) -> list[tuple[tuple, list, tuple[int, int]]]:
        """The whole solution and each of its parts that recurs in `min_support` verified solutions
        (this one included), each with tests from the visible examples (the value before the part and
        after it, on every input) and its span."""
        e, traces = tuple(expanded), [trace(expanded, x) for x, _ in task.visible]
        spans = [(0, len(e))] + [(i, j) for i in range(len(e)) for j in range(i + self.min_len, min(len(e), i + self.max_len) + 1)
                                 if (i, j) != (0, len(e)) and self.support(e[i:j]) >= self.min_support]
        return [(e[i:j], [[tr[i], tr[j]] for tr in traces], (i, j)) for i, j in spans]

    def evolve(self, task: Task, traj: Trajectory, step: int) -> list[str]:
        """After a verified solution: log it, propose it and its recurring parts; returns the kept tools."""
        if not traj.solved:
            return []
        self.solutions[task.task_id] = tuple(traj.expanded)
        kept = []
        for body, tests, span in self.candidates(task, traj.expanded):
            tool, _ = self.propose(body, tests, task.category, step, task.task_id, span)
            if tool:
                kept.append(tool.name)
        return kept


class ExperienceMemory:
    """Entries of what worked and what failed per task signature, and the search prior they imply."""

    def __init__(self, alpha: float, unigram: float, backoff: float, partial: float, fail_length: float,
                 explore: float):
        self.alpha, self.unigram, self.backoff, self.explore = alpha, unigram, backoff, explore
        self.partial, self.fail_length = partial, fail_length
        self.entries: list[dict] = []
        self.bigram = defaultdict(Counter)  # category -> (prev, token) -> weight
        self.uni = defaultdict(Counter)  # category -> token -> weight
        self.uni_all = Counter()
        self.lengths = defaultdict(Counter)  # category -> program length -> successes
        self.fails = Counter()  # category -> failures

    def add(self, traj: Trajectory) -> dict:
        entry = {"task_id": traj.task_id, "category": traj.category, "outcome": "worked" if traj.solved else "failed",
                 "program": traj.program, "expanded": traj.expanded, "visible_score": traj.score}
        self.entries.append(entry)
        if traj.solved:  # generalise: what worked in this category
            self._count(traj.category, traj.program, 1.0)
            self.lengths[traj.category][len(traj.program)] += 1
        else:  # diagnose: the solution is longer than what was found; the best candidate got part right
            self.fails[traj.category] += 1
            if traj.score > 0:
                self._count(traj.category, traj.program, self.partial * traj.score)
        return entry

    def _count(self, category: str, program: list[str], w: float) -> None:
        for prev, tok in zip([START, *program], program):
            self.bigram[category][prev, tok] += w
            self.uni[category][tok] += w
            self.uni_all[tok] += w

    def weights(self, category: str, prev: str, options: list[str]) -> list[float]:
        """P(token | previous token, category): smoothed counts, mixed with the uniform distribution
        at rate `explore` so that the search never stops exploring."""
        bi, uni = self.bigram[category], self.uni[category]
        return self._mix([self.alpha + bi[prev, o] + self.unigram * uni[o] + self.backoff * self.uni_all[o]
                          for o in options])

    def length_weights(self, category: str, lengths: list[int]) -> list[float]:
        top = max(lengths)
        return self._mix([self.alpha + self.lengths[category][n] +
                          (self.fail_length * self.fails[category] if n == top else 0) for n in lengths])

    def _mix(self, w: list[float]) -> list[float]:
        total = sum(w)
        return [(1 - self.explore) * x / total + self.explore / len(w) for x in w]


def simplify(prog: list[str], vocab: dict[str, tuple[str, ...]], task: Task) -> list[str]:
    """Drop tokens, first to last, while the program stays well-typed and reproduces every visible
    example (a found program often carries steps that change nothing on them)."""
    prog, i = list(prog), 0
    while i < len(prog):
        cut = prog[:i] + prog[i + 1:]
        body = [p for tok in cut for p in vocab[tok]]
        if body and well_typed(body, task.in_type, task.out_type) and passes(body, task.visible):
            prog = cut
        else:
            i += 1
    return prog


def search(task: Task, vocab: dict[str, tuple[str, ...]], budget: int, max_len: int, rng: random.Random,
           experience: ExperienceMemory | None = None, bias: dict[str, float] | None = None,
           max_draws: int = 20) -> Trajectory:
    """Sample well-typed programs of 1..max_len tokens (vocab: token -> primitive body) until one
    reproduces every visible example or `budget` unique candidates were run (at most
    max_draws * budget draws). `bias` multiplies token weights (the LLM proposer at `paper`)."""
    io = {t: (types_of(b)) for t, b in vocab.items()}
    by_type = defaultdict(list)
    for tok, (t_in, _) in io.items():
        by_type[t_in].append(tok)
    # feasible[r]: types from which exactly r more tokens can end at the output type
    feasible = [{task.out_type}]
    for _ in range(max_len):
        feasible.append({t for t, toks in by_type.items() if any(io[o][1] in feasible[-1] for o in toks)})
    lengths = [n for n in range(1, max_len + 1) if task.in_type in feasible[n]]
    len_w = experience.length_weights(task.category, lengths) if experience else [1.0] * len(lengths)
    inputs, outputs = [x for x, _ in task.visible], [y for _, y in task.visible]
    tried, best, draws = set(), None, 0
    while len(tried) < budget and draws < max_draws * budget and lengths:
        draws += 1
        n = rng.choices(lengths, weights=len_w)[0]
        prog, t, prev = [], task.in_type, START
        for i in range(n):
            options = [o for o in by_type[t] if io[o][1] in feasible[n - i - 1]]
            w = experience.weights(task.category, prev, options) if experience else [1.0] * len(options)
            if bias:
                w = [x * bias.get(o, 1.0) for x, o in zip(w, options)]
            prev = rng.choices(options, weights=w)[0]
            prog.append(prev)
            t = io[prev][1]
        key = tuple(prog)
        if key in tried:
            continue
        tried.add(key)
        expanded = [p for tok in prog for p in vocab[tok]]
        score = sum(execute(expanded, x) == y for x, y in zip(inputs, outputs)) / len(inputs)
        if best is None or score > best[0]:
            best = (score, prog, expanded)
        if score == 1.0:
            break
    tools = {tok for p in tried for tok in p if tok not in PRIMITIVES}
    score, prog, expanded = best if best else (0.0, [], [])
    if score == 1.0:
        prog = simplify(prog, vocab, task)
        expanded = [p for tok in prog for p in vocab[tok]]
    return Trajectory(task.task_id, task.category, score == 1.0, list(prog), list(expanded), score, len(tried), tools)


class Agent:
    """One arm: `experience` and `assets` switch the two memories. With both, they co-evolve: experience
    shapes the search over primitives and tools, and the tools are cut from the solutions it finds."""

    def __init__(self, experience: bool, assets: bool, search_p: dict, memory_p: dict, bias_fn=None):
        self.search_p, self.m = search_p, memory_p
        p = memory_p["prior"]
        self.experience = ExperienceMemory(**p) if experience else None
        self.assets = AssetMemory(memory_p["tool_min_len"], memory_p["tool_max_len"], memory_p["probes"],
                                  memory_p["demote_after"], memory_p["demote_below"], memory_p["min_support"],
                                  memory_p["home_bonus"]) if assets else None
        self.bias_fn = bias_fn  # task, vocab -> {token: weight} (LLM backbone) or None
        self.step = 0

    def solve(self, task: Task, budget: int, rng: random.Random) -> tuple[Trajectory, list[Tool]]:
        """Forward: recruit, then search (reads the memories, never changes them). Returns the
        trajectory and the recruited tools."""
        tools = (self.assets.recruit(task.in_type, task.out_type, task.category, self.m["tools_per_task"])
                 if self.assets else [])
        vocab = {p: (p,) for p in PRIMITIVES} | {t.name: t.body for t in tools}
        bias = self.bias_fn(task, vocab) if self.bias_fn else None
        traj = search(task, vocab, budget, self.search_p["max_len"], rng, self.experience, bias,
                      self.search_p["max_draws"])
        return traj, tools

    def learn(self, task: Task, traj: Trajectory) -> dict:
        """Backward: evolve both memories from the trajectory and the visible examples."""
        self.step += 1
        out = {"kept": [], "demoted": []}
        if self.experience is not None:
            self.experience.add(traj)
        if self.assets is not None:
            out["demoted"] = self.assets.record(traj)
            out["kept"] = self.assets.evolve(task, traj, self.step)
        return out


def _shown(task: dict) -> set[str]:
    return {json.dumps(v) for pair in task["visible"] for v in pair}


def _not_stream(source: str, tasks: dict[str, dict]) -> str | None:
    """Why a memory item learned from task `source` breaks provenance (None: a stream task)."""
    if source not in tasks or tasks[source]["split"] != "stream":
        return f"learned from {source!r}, which is not a stream task"
    return None


def audit(experience: ExperienceMemory | None, assets: AssetMemory | None, tasks: dict[str, dict]) -> list[str]:
    """Violations of "memories hold only what the stream's visible examples justify". `tasks`: task_id
    -> {split, visible, hidden, program} for every task (stream, held-out, transfer).
    (1) provenance: every experience entry, logged solution and tool comes from a stream task; an
        entry's outcome and score follow from that task's visible examples; a logged solution passes
        them; a tool is a part of its source's logged solution (so its tests came from those examples);
    (2) held-out target programs: a memory program equal to an evaluation task's target is allowed
        only through (1) (a stream task with the same composition, solved on its visible examples);
    (3) values: no hidden input or output of any task, and no example of an evaluation task (lists and
        texts; integers are too common to attribute), appears in the serialised memories unless a
        stream task's visible examples show it."""
    bad = []
    for e in experience.entries if experience else []:
        why = _not_stream(e["task_id"], tasks)
        if why:
            bad.append(f"experience entry: {why}")
            continue
        vis = tasks[e["task_id"]]["visible"]
        score = (sum(execute(e["expanded"], x) == y for x, y in vis) / len(vis)) if e["expanded"] else 0.0
        if abs(score - e["visible_score"]) > 1e-9 or (e["outcome"] == "worked") != (score == 1.0):
            bad.append(f"{e['task_id']}: experience outcome {e['outcome']!r} / score {e['visible_score']} "
                       f"does not follow from the visible examples ({score})")
    for tid, sol in (assets.solutions.items() if assets else []):
        why = _not_stream(tid, tasks)
        if why or not passes(list(sol), tasks[tid]["visible"]):
            bad.append(f"logged solution {list(sol)}: {why or f'fails the visible examples of {tid}'}")
    for t in (assets.tools.values() if assets else []):
        sol = assets.solutions.get(t.source)
        if _not_stream(t.source, tasks) or sol is None or tuple(sol[t.span[0]:t.span[1]]) != t.body:
            bad.append(f"tool {t.name} {list(t.body)}: not a part of a verified solution of a stream task "
                       f"(source {t.source!r}, span {list(t.span)})")
    targets = {tuple(json.loads(v["program"])): k for k, v in tasks.items() if v["split"] != "stream"}
    programs = ([(tuple(e["expanded"]), e["task_id"]) for e in experience.entries] if experience else []) + \
               ([(t.body, t.source) for t in assets.tools.values()] if assets else [])
    for prog, source in programs:
        if prog in targets and _not_stream(source, tasks):
            bad.append(f"{targets[prog]}: its target program {list(prog)} is in memory without a stream task "
                       "that justifies it")
    blob = json.dumps({"experience": experience.entries if experience else [],
                       "solutions": assets.solutions if assets else {},
                       # a span is two stream positions, not data: "[1, 4]" would read as a short list
                       "tools": [{k: v for k, v in vars(t).items() if k != "span"} for t in assets.tools.values()]
                       if assets else []}, default=list)
    stream_shown = set().union(*(_shown(t) for t in tasks.values() if t["split"] == "stream"))
    for tid, t in tasks.items():
        values = [v for pair in t["hidden"] for v in pair]
        if t["split"] != "stream":
            values += [v for pair in t["visible"] for v in pair]
        for v in values:
            s = json.dumps(v)
            if isinstance(v, (list, str)) and len(s) >= 6 and s not in stream_shown and s in blob:
                bad.append(f"{tid}: {t['split']} value {s} found in memory")
    return bad


def targets_in_memory(experience: ExperienceMemory | None, assets: AssetMemory | None,
                      tasks: dict[str, dict]) -> int:
    """Evaluation tasks whose target program a memory holds (as a tool or a successful entry's
    program): repeats of a stream composition, allowed by the audit's provenance check."""
    held = [tuple(json.loads(v["program"])) for v in tasks.values() if v["split"] != "stream"]
    mem = {t.body for t in assets.tools.values()} if assets else set()
    mem |= {tuple(e["expanded"]) for e in experience.entries if e["outcome"] == "worked"} if experience else set()
    return sum(p in mem for p in held)
