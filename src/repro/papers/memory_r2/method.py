"""Memory-R2's mechanism: a memory agent (extractor + manager), its rewards, and LoGo's groups.

1. The agent reads a dialogue chunk by chunk. Per chunk the extractor writes the chunk's atomic fact
   (`person attribute value`, or `nothing`); the manager sees that fact and the top-k memories a
   keyword retrieval returns (slots m1..mk) and writes one operation: `insert`, `update mJ`,
   `delete mJ` or `noop` (the paper's NONE). Operations act on a memory of uid -> fact text.
2. A frozen rule-based answerer reads only the memory: it retrieves by keyword overlap with the
   question and answers with the values of the retrieved facts that match it (`none` if none).
   Token F1 against the gold answer scores it.
3. Reward of a session = mean F1 of the QAs whose evidence is in that session, answered from the
   rollout's final memory, minus lambda * max(0, mem_words - threshold * basis) / basis (at the end;
   the same penalty for every session). The spec's basis is the dialogue's cumulative words with
   threshold 0.7; a toy whose memory cannot reach 0.7 of its dialogue measures it against the words
   of the dialogue's gold facts instead (what an agent that inserts every fact writes), see `Reward`.
4. Global groups: the n rollouts of a conversation, one group per (conversation, session).
   Local groups (LoGo): per conversation and session, with probability p, one source rollout's memory
   snapshot at the session's start is deep-copied and the session re-rolled m times; each re-roll's
   reward is computed right away (QAs with evidence in that session, memory right after it, penalty
   on the words so far). Every group gets its own id; advantages are group-normalised.
5. Credit diagnostic (simulation only): an operation's counterfactual value is the reward it earned
   minus the reward of the same rollout replayed without it.
"""
from __future__ import annotations

import copy
import random
import re
from collections import Counter
from dataclasses import dataclass, field

import torch

from repro.data import factworld
from repro.rl.rollout import sample

ROLES = ("extractor", "manager")
NOTHING = "nothing"
OPS = ("insert", "update", "delete", "noop")


# --- memory and its operations -------------------------------------------------------------------
@dataclass
class Memory:
    entries: dict[int, str] = field(default_factory=dict)  # uid -> fact text, in insertion order
    next_uid: int = 0

    def insert(self, text: str, uid: int | None = None) -> int:
        uid = self.next_uid if uid is None else uid
        self.entries[uid] = text
        self.next_uid = max(self.next_uid, uid + 1)
        return uid

    def tokens(self) -> int:
        return sum(len(t.split()) for t in self.entries.values())

    def retrieve(self, query: list[str], k: int) -> list[int]:
        """uids of the top-k entries by the number of query words they contain (ties: oldest first)."""
        q = set(query)
        scored = [(-len(q & set(t.split())), uid) for uid, t in self.entries.items()]
        return [uid for score, uid in sorted(scored) if score < 0][:k]


@dataclass
class Op:
    kind: str              # insert | update | delete | noop | invalid
    uid: int | None        # the memory entry it acts on (the new one for insert)
    text: str | None       # the fact it writes
    session: int


def parse_fact(text: str) -> str | None:
    words = text.split()
    return " ".join(words) if len(words) == 3 and NOTHING not in words else None


def parse_op(text: str) -> tuple[str, int | None]:
    """('insert'|'noop', None), ('update'|'delete', slot index from 0), or ('invalid', None)."""
    m = re.fullmatch(r"\s*(insert|noop|update|delete)(?:\s+m(\d+))?\s*", text)
    if not m or (m.group(1) in ("update", "delete")) != (m.group(2) is not None):
        return "invalid", None
    return m.group(1), (int(m.group(2)) - 1 if m.group(2) else None)


def apply_op(memory: Memory, kind: str, slot: int | None, slots: list[int], fact: str, session: int) -> Op:
    """Execute a parsed operation; a slot beyond the retrieved ones is invalid (a no-op)."""
    if kind == "insert":
        return Op("insert", memory.insert(fact), fact, session)
    if kind in ("update", "delete"):
        if slot is None or slot >= len(slots):
            return Op("invalid", None, None, session)
        uid = slots[slot]
        if kind == "update":
            memory.entries[uid] = fact
        else:
            del memory.entries[uid]
        return Op(kind, uid, fact, session)
    return Op(kind, None, None, session)


def replay(start: Memory, ops: list[Op], skip: int | None = None) -> Memory:
    """The memory `ops` produce from `start`, leaving out op `skip`; an op on an entry that no longer
    exists (e.g. one the skipped insert created) does nothing."""
    mem = copy.deepcopy(start)
    for i, op in enumerate(ops):
        if i == skip:
            continue
        if op.kind == "insert":
            mem.insert(op.text, op.uid)
        elif op.kind == "update" and op.uid in mem.entries:
            mem.entries[op.uid] = op.text
        elif op.kind == "delete":
            mem.entries.pop(op.uid, None)
    return mem


# --- prompts and the oracle the SFT warm start imitates ----------------------------------------
def extractor_prompt(utterance: str) -> str:
    return f"<ext> {utterance} <sep>"


def manager_query(fact: str) -> list[str]:
    return fact.split()[:2]  # person and attribute: the entry a new value would replace


def manager_prompt(fact: str, memory: Memory, slots: list[int]) -> str:
    shown = " ".join(f"m{j + 1} {memory.entries[uid]}" for j, uid in enumerate(slots))
    return f"<mgr> {fact} <mem> {shown} <sep>"


def correct_op(fact: str, memory: Memory, slots: list[int]) -> str:
    e, a, v = fact.split()
    same = [j for j, uid in enumerate(slots) if memory.entries[uid].split()[:2] == [e, a]]
    if v == "none":
        return f"delete m{same[0] + 1}" if same else "noop"
    if same and memory.entries[slots[same[0]]].split()[2] == v:
        return "noop"
    return f"update m{same[0] + 1}" if same else "insert"


def oracle_examples(conv: dict, rng: random.Random, drop: float, op_correct: float, k: int) -> list[tuple[str, str, str]]:
    """(role, prompt, target) of an imperfect oracle: it drops a fact with probability `drop` and
    writes the correct operation with probability `op_correct`, else `insert`."""
    memory, out = Memory(), []
    for session, (utts, facts) in enumerate(zip(conv["sessions"], conv["facts"])):
        for utt, fact in zip(utts, facts):
            kept = fact if fact is not None and rng.random() >= drop else None
            out.append(("extractor", extractor_prompt(utt), kept or NOTHING))
            if kept is None:
                continue
            slots = memory.retrieve(manager_query(kept), k)
            op = correct_op(kept, memory, slots) if rng.random() < op_correct else "insert"
            out.append(("manager", manager_prompt(kept, memory, slots), op))
            apply_op(memory, *parse_op(op), slots, kept, session)
    return out


# --- the frozen answerer, token F1 and the rewards -----------------------------------------------
def _values(memory: Memory, person: str, attr: str, k: int) -> list[str]:
    facts = [memory.entries[u].split() for u in memory.retrieve([person, attr], k)]
    return [f[2] for f in facts if len(f) == 3 and f[:2] == [person, attr]]


def answer(memory: Memory, question: str, k: int) -> str:
    """Rule-based answer from the memory alone: `what is P A` or `what is A of person with B V`."""
    w = question.split()
    if "person" in w:  # multi-hop: who has B V, then their A
        attr, via, value = w[2], w[-2], w[-1]
        people = [f[0] for f in (memory.entries[u].split() for u in memory.retrieve([via, value], k))
                  if len(f) == 3 and f[1:] == [via, value]]
        vals = [v for p in dict.fromkeys(people) for v in _values(memory, p, attr, k)]
    else:
        vals = _values(memory, w[2], w[3], k)
    return " ".join(vals) if vals else "none"


def token_f1(prediction: str, gold: str) -> float:
    p, g = prediction.split(), gold.split()
    common = sum((Counter(p) & Counter(g)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(p), common / len(g)
    return 2 * precision * recall / (precision + recall)


def compression_penalty(memory_tokens: int, basis_tokens: int, lam: float, threshold: float = 0.7) -> float:
    return lam * max(0.0, memory_tokens - threshold * basis_tokens) / max(1, basis_tokens)


def session_words(conv: dict, upto: int) -> int:
    """Words of the dialogue's sessions 0..upto-1."""
    return sum(len(u.split()) for s in conv["sessions"][:upto] for u in s)


def fact_words(conv: dict, upto: int) -> int:
    """Words of the gold facts of sessions 0..upto-1 (restatements and retractions included)."""
    return sum(len(f.split()) for fs in conv["facts"][:upto] for f in fs if f is not None)


@dataclass(frozen=True)
class Reward:
    """The compression penalty's parameters (params `reward`). `basis`: `dialogue` (the spec: memory
    against the dialogue's words) or `facts` (against the gold facts' words: in FactWorld a fact is
    ~0.4 of its utterance's words, so a memory never reaches 0.7 of the dialogue and the spec's
    threshold could never bind)."""
    lam: float
    threshold: float = 0.7
    basis: str = "dialogue"

    def penalty(self, memory: Memory, conv: dict, upto: int) -> float:
        words = (fact_words if self.basis == "facts" else session_words)(conv, upto)
        return compression_penalty(memory.tokens(), words, self.lam, self.threshold)


def session_reward(memory: Memory, conv: dict, session: int, upto: int, reward: Reward, k: int) -> float:
    """F1 of the QAs whose evidence is `session` (0 if none) minus the penalty over sessions < upto."""
    f1 = [token_f1(answer(memory, q["question"], k), q["answer"]) for q in conv["qas"]
          if q["evidence_session"] == session]
    return (sum(f1) / len(f1) if f1 else 0.0) - reward.penalty(memory, conv, upto)


def final_state(conv: dict) -> dict[tuple[str, str], str]:
    """(person, attribute) -> its value after the last session (`none`: retracted)."""
    state = {}
    for fs in conv["facts"]:
        for f in fs:
            if f is not None:
                e, a, v = f.split()
                state[(e, a)] = v
    return state


def memory_failure(memory: Memory, conv: dict) -> float:
    """Share of the (person, attribute) keys the memory gets wrong: the current value missing, a stale
    or wrong value beside or instead of it, a value kept for a retracted key, or a key the dialogue
    never stated. A stored retraction (`... none`) reads as no value."""
    held: dict[tuple[str, str], set] = {}
    for text in memory.entries.values():
        e, a, v = text.split()
        if v != factworld.NONE:
            held.setdefault((e, a), set()).add(v)
    state = final_state(conv)
    expected = {key: set() if v == factworld.NONE else {v} for key, v in state.items()}
    keys = set(state) | set(held)
    wrong = [key for key in keys if held.get(key, set()) != expected.get(key, set())]
    return len(wrong) / len(keys) if keys else 0.0


# --- the agent: batched turns of every live trace -----------------------------------------------
@dataclass
class Trace:
    """One rollout of a conversation (global) or of one session from a snapshot (local)."""
    conv: dict
    start: Memory
    sessions: list[int]
    memory: Memory = None
    ops: list[Op] = field(default_factory=list)
    snapshots: dict[int, Memory] = field(default_factory=dict)  # memory at each session's start
    samples: list[tuple[str, int, int, int]] = field(default_factory=list)  # role, call, row, session
    op_samples: list[tuple[int, int]] = field(default_factory=list)  # (call, row) of each op

    def __post_init__(self):
        self.memory = copy.deepcopy(self.start)  # a local re-roll never touches its source's memory


class Agent:
    """Samples both roles' turns; `models` maps a role to its LM (one object for shared parameters)."""

    def __init__(self, models: dict, tokenizer, *, max_new_tokens: dict, k: int):
        self.models, self.tok, self.max_new, self.k = models, tokenizer, max_new_tokens, k
        self.calls: list[tuple[str, object]] = []  # (role, Rollouts) of every sampling call

    def _sample(self, role: str, prompts: list[str], temperature: float, generator) -> list[str]:
        """Temperature 0: greedy (log-probs then at temperature 1, the policy's own)."""
        ids = [self.tok.encode(p, add_special_tokens=False) for p in prompts]
        ro = sample(self.models[role], ids, group_size=1, max_new_tokens=self.max_new[role],
                    eos_id=self.tok.eos_token_id, pad_id=self.tok.pad_token_id,
                    temperature=temperature or 1.0, greedy=temperature == 0, generator=generator)
        self.calls.append((role, ro))
        return [self.tok.decode(r, skip_special_tokens=True) for r in ro.response_lists()]

    def run(self, traces: list[Trace], temperature: float, generator=None) -> None:
        """Every trace reads its sessions' chunks in lockstep (chunk c of every trace in one call)."""
        width = max(len(t.sessions) for t in traces)
        for i in range(width):
            live = [t for t in traces if i < len(t.sessions)]
            for t in live:
                t.snapshots[t.sessions[i]] = copy.deepcopy(t.memory)
            chunks = max(len(t.conv["sessions"][t.sessions[i]]) for t in live)
            for c in range(chunks):
                turn = [(t, t.sessions[i]) for t in live if c < len(t.conv["sessions"][t.sessions[i]])]
                self.turn(turn, c, temperature, generator)

    def turn(self, turn: list[tuple[Trace, int]], c: int, temperature: float, generator) -> None:
        texts = self._sample("extractor", [extractor_prompt(t.conv["sessions"][s][c]) for t, s in turn],
                             temperature, generator)
        call = len(self.calls) - 1
        todo = []
        for row, ((t, s), text) in enumerate(zip(turn, texts)):
            t.samples.append(("extractor", call, row, s))
            fact = parse_fact(text)
            if fact is not None:
                todo.append((t, s, fact, t.memory.retrieve(manager_query(fact), self.k)))
        if not todo:
            return
        texts = self._sample("manager", [manager_prompt(f, t.memory, sl) for t, _, f, sl in todo], temperature, generator)
        call = len(self.calls) - 1
        for row, ((t, s, fact, slots), text) in enumerate(zip(todo, texts)):
            t.samples.append(("manager", call, row, s))
            t.ops.append(apply_op(t.memory, *parse_op(text), slots, fact, s))
            t.op_samples.append((call, row))


def rollout_conversations(agent: Agent, convs: list[dict], n: int, temperature: float, generator=None) -> list[Trace]:
    """n global rollouts of each conversation over all its sessions (rows c*n .. c*n+n-1)."""
    traces = [Trace(conv, Memory(), list(range(len(conv["sessions"])))) for conv in convs for _ in range(n)]
    agent.run(traces, temperature, generator)
    return traces


def local_rerolls(agent: Agent, sources: list[list[Trace]], p: float, m: int, temperature: float,
                  rng: random.Random, generator=None) -> list[list[Trace]]:
    """LoGo's local groups: for each conversation (its global traces) and session, with probability p,
    m re-rolls of that session from a deep copy of one uniformly chosen source's snapshot."""
    groups = []
    for traces in sources:
        for s in range(len(traces[0].sessions)):
            if rng.random() < p:
                src = rng.choice(traces)
                groups.append([Trace(src.conv, src.snapshots[s], [s]) for _ in range(m)])
    if groups:
        agent.run([t for g in groups for t in g], temperature, generator)
    return groups


def global_rewards(trace: Trace, reward: Reward, k: int) -> list[float]:
    n = len(trace.conv["sessions"])
    return [session_reward(trace.memory, trace.conv, s, n, reward, k) for s in range(n)]


def local_reward(trace: Trace, reward: Reward, k: int, memory: Memory | None = None) -> float:
    s = trace.sessions[0]
    return session_reward(memory or trace.memory, trace.conv, s, s + 1, reward, k)


def trace_penalty(trace: Trace, reward: Reward) -> float:
    """The penalty in this trace's rewards: over the whole dialogue (global), up to its session (local)."""
    return reward.penalty(trace.memory, trace.conv, trace.sessions[-1] + 1)


def counterfactual_values(trace: Trace, local: bool, reward: Reward, k: int, ops: list[int]) -> list[float]:
    """For each op index: the reward of its session with the op minus without it (same other ops)."""
    out = []
    for i in ops:
        s, n = trace.ops[i].session, len(trace.conv["sessions"])
        without = replay(trace.start, trace.ops, skip=i)
        if local:
            out.append(local_reward(trace, reward, k) - local_reward(trace, reward, k, without))
        else:
            out.append(session_reward(trace.memory, trace.conv, s, n, reward, k) -
                       session_reward(without, trace.conv, s, n, reward, k))
    return out


def score(memory: Memory, conv: dict, k: int, reward: Reward, ops: list[Op] = ()) -> dict:
    """A conversation's test record: every QA's F1 and type, memory failure, size and penalty."""
    return {"id": conv["id"], "f1": [token_f1(answer(memory, q["question"], k), q["answer"]) for q in conv["qas"]],
            "types": [q["type"] for q in conv["qas"]], "memory_failure": memory_failure(memory, conv),
            "memory_entries": len(memory.entries), "memory_tokens": memory.tokens(),
            "penalty": reward.penalty(memory, conv, len(conv["sessions"])), "ops": Counter(o.kind for o in ops)}


def greedy_eval(agent: Agent, convs: list[dict], k: int, reward: Reward) -> list[dict]:
    """Greedy rollouts of `convs`, one record each (`score`)."""
    traces = rollout_conversations(agent, convs, 1, temperature=0.0)
    agent.calls.clear()
    return [score(t.memory, t.conv, k, reward, t.ops) for t in traces]


def kl_k3(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """Per-token KL(pi || ref) estimate exp(r) - r - 1 with r = ref - logp (non-negative)."""
    r = ref_logp - logp
    return torch.exp(r) - r - 1
