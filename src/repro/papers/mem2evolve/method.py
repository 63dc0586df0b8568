"""Mem2Evolve's mechanism: an agent whose Experience Memory and Asset Memory evolve together.

Forward (solve one task from its description and visible examples only):
1. Plan: the task's signature (category, input and output type) is what the description gives.
2. Recruit assets: up to `tools_per_task` active tools (named DSL compositions) that fit the types,
   ranked by experience (wins under this category) when there is one, else by the tool's own record.
3. Execute: stochastic program search over primitives + recruited tools. Programs are sampled token
   by token, well-typed by construction, from a prior: uniform without experience, else the
   experience's bigram / unigram counts of what worked in the category (with a global back-off) and
   a length prior that failures shift towards longer programs. The first program that reproduces
   every visible example is submitted, less the steps it does not need on them; without one, the
   best partial program is.
Backward (reads the trajectory and the visible examples, never a hidden test):
4. Evolve Asset Memory: record which tools were tried / won / failed and demote tools that keep
   failing; after a success, propose the solution as a tool and (guided by experience) every
   sub-composition of it that recurs in earlier successes. A proposal is kept only if it passes
   tests generated from the visible examples (the values the solution computes on them) and
   behaves unlike every primitive and active tool on fixed probe inputs (deduplication).
5. Evolve Experience Memory: a success generalises into counts of its program's tokens; a failure
   is diagnosed (length shift, partial credit for the best candidate's tokens).
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
    category: str  # of the task that created it
    created: int  # stream position
    tries: int = 0
    wins: int = 0
    fails: int = 0
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
    """Tools: created from verified solutions, deduplicated by behaviour, demoted when unreliable."""

    def __init__(self, min_len: int, max_len: int, probes: int, demote_after: int, demote_below: float):
        self.min_len, self.max_len = min_len, max_len
        self.demote_after, self.demote_below = demote_after, demote_below
        self.probes = {t: probe_inputs(t, probes) for t in REACH}
        self.tools: dict[str, Tool] = {}
        self.keys = {self.behaviour((p,)): p for p in PRIMITIVES}  # behaviour -> primitive / active tool
        self.log = Counter()  # proposals by outcome

    def behaviour(self, body) -> tuple:
        t_in = PRIMITIVES[body[0]][0]
        return t_in, tuple(json.dumps(execute(body, x)) for x in self.probes[t_in])

    def propose(self, body, tests, category: str, step: int) -> tuple[Tool | None, str]:
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
            tool = Tool(f"T{len(self.tools)}", body, *types_of(body), category, step)
            self.tools[tool.name] = tool
            self.keys[self.behaviour(body)] = tool.name
            reason = "kept"
        self.log[reason] += 1
        return tool, reason

    def active(self) -> list[Tool]:
        return [t for t in self.tools.values() if t.active]

    def recruit(self, t_in: str, t_out: str, k: int, score) -> list[Tool]:
        """Up to k active tools that can start a program from t_in or end one at t_out (and lie on a
        path between them), best `score` first (newest on ties)."""
        fit = [t for t in self.active() if (t.in_type == t_in or t.out_type == t_out)
               and t.in_type in REACH[t_in] and t_out in REACH[t.out_type]]
        return sorted(fit, key=lambda t: (score(t), t.created), reverse=True)[:k]

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
            if tool.active and tool.fails >= self.demote_after and tool.wins / (tool.wins + tool.fails) < self.demote_below:
                tool.active = False
                del self.keys[self.behaviour(tool.body)]
                demoted.append(name)
        return demoted


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

    def tool_score(self, category: str, tool: Tool) -> float:
        """What experience says of a tool for this category: its wins here, a bonus for its home category."""
        return self.uni[category][tool.name] + (0.5 if tool.category == category else 0.0)

    def support(self, body: tuple[str, ...]) -> int:
        """Successful entries (any category) whose program contains `body` as a contiguous part."""
        n = len(body)
        return sum(any(tuple(e["expanded"][i:i + n]) == body for i in range(len(e["expanded"]) - n + 1))
                   for e in self.entries if e["outcome"] == "worked")


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
    """One arm: `experience` and `assets` switch the two memories; with both, experience also ranks
    the tools to recruit and guides which sub-compositions become tools (the co-evolution)."""

    def __init__(self, experience: bool, assets: bool, search_p: dict, memory_p: dict, bias_fn=None):
        self.search_p, self.m = search_p, memory_p
        p = memory_p["prior"]
        self.experience = ExperienceMemory(**p) if experience else None
        self.assets = AssetMemory(memory_p["tool_min_len"], memory_p["tool_max_len"], memory_p["probes"],
                                  memory_p["demote_after"], memory_p["demote_below"]) if assets else None
        self.bias_fn = bias_fn  # task, vocab -> {token: weight} (LLM backbone) or None
        self.step = 0

    def tool_score(self, category: str):
        if self.experience is not None:
            return lambda tool: self.experience.tool_score(category, tool)
        return lambda tool: (tool.wins + 1) / (tool.tries + 2)

    def solve(self, task: Task, budget: int, rng: random.Random) -> tuple[Trajectory, list[Tool]]:
        """Forward: recruit, then search. Returns the trajectory and the recruited tools."""
        tools = (self.assets.recruit(task.in_type, task.out_type, self.m["tools_per_task"],
                                     self.tool_score(task.category)) if self.assets else [])
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
        if self.assets is None:
            return out
        out["demoted"] = self.assets.record(traj)
        if traj.solved:
            for body, tests in self.tool_candidates(task, traj):
                tool, _ = self.assets.propose(body, tests, task.category, self.step)
                if tool:
                    out["kept"].append(tool.name)
        return out

    def tool_candidates(self, task: Task, traj: Trajectory) -> list[tuple[tuple, list]]:
        """The whole solution, and with experience each recurring contiguous part of it, each with
        tests from the visible examples: (value before the part, value after it) on every input."""
        e, traces = traj.expanded, [trace(traj.expanded, x) for x, _ in task.visible]
        spans = [(0, len(e))]
        if self.experience is not None:
            lo, hi = self.m["tool_min_len"], self.m["tool_max_len"]
            spans += [(i, j) for i in range(len(e)) for j in range(i + lo, min(len(e), i + hi) + 1)
                      if (i, j) != (0, len(e)) and self.experience.support(tuple(e[i:j])) >= self.m["min_support"]]
        return [(tuple(e[i:j]), [[tr[i], tr[j]] for tr in traces]) for i, j in spans]


def audit(experience: ExperienceMemory | None, assets: AssetMemory | None, tasks: dict[str, dict]) -> list[str]:
    """Violations of "no hidden test output enters a memory". `tasks`: task_id -> {visible, hidden}.
    (1) every experience entry's outcome and score must follow from the visible examples alone;
    (2) no hidden input or output (lists and texts; integers are too common to attribute) appears
    in the serialised memories unless a visible example shows it too."""
    bad = []
    for e in experience.entries if experience else []:
        vis = tasks[e["task_id"]]["visible"]
        score = (sum(execute(e["expanded"], x) == y for x, y in vis) / len(vis)) if e["expanded"] else 0.0
        if abs(score - e["visible_score"]) > 1e-9 or (e["outcome"] == "worked") != (score == 1.0):
            bad.append(f"{e['task_id']}: experience outcome {e['outcome']!r} / score {e['visible_score']} "
                       f"does not follow from the visible examples ({score})")
    blob = json.dumps({"experience": experience.entries if experience else [],
                       "tools": [vars(t) for t in assets.tools.values()] if assets else []}, default=list)
    for tid, t in tasks.items():
        shown = {json.dumps(v) for pair in t["visible"] for v in pair}
        for pair in t["hidden"]:
            for v in pair:
                s = json.dumps(v)
                if isinstance(v, (list, str)) and len(s) >= 6 and s not in shown and s in blob:
                    bad.append(f"{tid}: hidden value {s} found in memory")
    return bad
