"""FactWorld: synthetic multi-session dialogues about a few people, with QAs tagged by evidence session.

Each session is a list of utterances ("chunks"). An utterance states a new fact about a person
(`alice : my city is paris`), changes one (`alice : my city is now rome`), retracts one
(`alice : forget my city`), restates a known fact, or is chit-chat. The gold atomic fact of an
utterance is `person attribute value` (value `none` for a retraction, nothing for chit-chat).
QAs are asked after the last session and read the final state:
- single: a fact stated once and never changed (answer: its value);
- temporal: a fact that changed (answer: the latest value; the stale one is wrong);
- retraction: a fact that was retracted (answer: `none`);
- multi: a person's attribute found through another fact (`what is job of person with city rome`).
The evidence session of a QA is the session of the latest utterance its answer depends on.
Names and values come from fixed word lists (no Faker here), all distinct words, so a
word-level tokenizer covers every dialogue.
"""
from __future__ import annotations

import random

NAMES = ("alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "mallory",
         "oscar", "peggy", "rupert", "sybil", "trent", "victor", "wendy")
VALUES = {
    "city": ("paris", "rome", "oslo", "lima", "cairo", "tokyo", "quito", "dakar", "hanoi", "perth"),
    "job": ("chef", "nurse", "pilot", "baker", "judge", "miner", "tailor", "farmer", "singer", "potter"),
    "pet": ("cat", "dog", "parrot", "rabbit", "turtle", "hamster", "goat", "pony", "lizard", "ferret"),
    "hobby": ("chess", "golf", "karate", "knitting", "surfing", "poetry", "rowing", "tango", "fishing", "yoga"),
}
TEMPLATES = {
    "new": ("{e} : my {a} is {v}", "{e} : {v} is my {a}", "{e} : i have {v} as {a}"),
    "change": ("{e} : my {a} is now {v}", "{e} : i changed my {a} to {v}"),
    "retract": ("{e} : forget my {a}", "{e} : i no longer have a {a}"),
    "chitchat": ("{e} : nice weather today", "{e} : i am tired", "{e} : see you soon", "{e} : how are you",
                 "{e} : that sounds fun", "{e} : good morning"),
}
KINDS = ("new", "change", "retract", "restate", "chitchat")
NONE = "none"
QA_TYPES = ("single", "temporal", "retraction", "multi")
MAX_SLOTS = 8  # retrieved memories a prompt may show (m1..m8)


def vocabulary() -> list[str]:
    """Every word a FactWorld dialogue, fact or question uses."""
    words = set(NAMES) | set(VALUES) | {v for vs in VALUES.values() for v in vs} | {NONE}
    for ts in TEMPLATES.values():
        for t in ts:
            words |= {w for w in t.split() if not w.startswith("{")}
    for q in (question("{e}", "{a}"), multi_question("{a}", "{b}", "{v}")):
        words |= {w for w in q.split() if not w.startswith("{")}
    return sorted(words)


def question(person: str, attr: str) -> str:
    return f"what is {person} {attr}"


def multi_question(attr: str, via_attr: str, via_value: str) -> str:
    return f"what is {attr} of person with {via_attr} {via_value}"


def _utterance(rng: random.Random, kind: str, e: str, a: str = "", v: str = "") -> str:
    key = "new" if kind == "restate" else kind
    return rng.choice(TEMPLATES[key]).format(e=e, a=a, v=v)


def conversation(rng: random.Random, sessions: int, chunks: int, people: int, mix: dict) -> dict:
    """One dialogue of `sessions` x `chunks` utterances; `mix`: weight of each utterance kind (a kind
    that cannot apply yet, e.g. a change before any fact, is redrawn)."""
    names = rng.sample(NAMES, people)
    state: dict[tuple[str, str], str] = {}       # current facts
    history: dict[tuple[str, str], list] = {}    # (person, attr) -> [(session, value)]
    out, facts = [], []
    weights = [mix[k] for k in KINDS]
    for s in range(sessions):
        utt, fs = [], []
        for _ in range(chunks):
            while True:
                kind = rng.choices(KINDS, weights)[0]
                unknown = [(e, a) for e in names for a in VALUES if (e, a) not in state]
                if kind == "new" and unknown:
                    e, a = rng.choice(unknown)
                    v = rng.choice(VALUES[a])
                elif kind in ("change", "retract", "restate") and state:
                    e, a = rng.choice(sorted(state))
                    v = (rng.choice([x for x in VALUES[a] if x != state[(e, a)]]) if kind == "change"
                         else NONE if kind == "retract" else state[(e, a)])
                elif kind == "chitchat":
                    e, a, v = rng.choice(names), "", ""
                else:
                    continue
                break
            utt.append(_utterance(rng, kind, e, a, v))
            if kind == "chitchat":
                fs.append(None)
                continue
            fs.append(f"{e} {a} {v}")
            if kind != "restate":
                history.setdefault((e, a), []).append((s, v))
            if v == NONE:
                del state[(e, a)]
            else:
                state[(e, a)] = v
        out.append(utt)
        facts.append(fs)
    return {"sessions": out, "facts": facts, "qas": qas(history, state)}


def qas(history: dict, state: dict) -> list[dict]:
    """Every stated (person, attribute) gets one QA; a city or job held by one person only also
    gives a multi-hop QA through it. `needs`: the memory facts a correct answer reads."""
    out = []
    for (e, a), events in sorted(history.items()):
        last_s, last_v = events[-1]
        kind = "retraction" if last_v == NONE else "temporal" if len(events) > 1 else "single"
        out.append({"question": question(e, a), "answer": last_v, "type": kind, "evidence_session": last_s,
                    "needs": [] if last_v == NONE else [f"{e} {a} {last_v}"]})
    for via in ("city", "job"):
        holders: dict[str, list[str]] = {}
        for (e, a), v in state.items():
            if a == via:
                holders.setdefault(v, []).append(e)
        for v, es in sorted(holders.items()):
            if len(es) != 1:
                continue
            e = es[0]
            for a in sorted(VALUES):
                if a != via and (e, a) in state:
                    ev = max(history[(e, a)][-1][0], history[(e, via)][-1][0])
                    out.append({"question": multi_question(a, via, v), "answer": state[(e, a)], "type": "multi",
                                "evidence_session": ev, "needs": [f"{e} {via} {v}", f"{e} {a} {state[(e, a)]}"]})
    return out


def generate(n: int, sessions: int, chunks: int, people: int, mix: dict, seed: int) -> list[dict]:
    rng = random.Random(seed)
    return [{"id": f"s{seed}c{i}", **conversation(rng, sessions, chunks, people, mix)} for i in range(n)]


SPECIAL = ("<pad>", "<eos>", "<unk>")


def word_tokenizer(words: list[str]):
    """A word-level tokenizer over `words` (whitespace split), saved and loaded like a hub one."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate([*SPECIAL, *sorted(set(words) - set(SPECIAL))])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>")
