"""memory_r2: FactWorld, the memory agent's operations, answerer, rewards, LoGo's groups, the credit
diagnostic, the claims' effects (null and clear), params validation and the paper-profile chain."""
import copy
import json
import random
import shutil

import numpy as np
import pytest
import torch
import yaml

from conftest import run_stage
from repro.core import config as rc
from repro.core import integrity
from repro.data import factworld
from repro.papers.memory_r2 import effects, method
from repro.papers.memory_r2.rl import credit_records, score_groups, validation_steps
from repro.report.intervals import hierarchical
from repro.report.verdicts import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED, evaluate_claims
from repro.rl.grpo import group_advantages
from repro.rl.rollout import Rollouts, concat

MIX = {"new": 3, "change": 1.5, "retract": 0.5, "restate": 0.7, "chitchat": 1}


def memory(*facts):
    m = method.Memory()
    for f in facts:
        m.insert(f)
    return m


def test_factworld_facts_and_qas_follow_the_dialogue():
    convs = factworld.generate(30, 4, 4, 3, MIX, seed=0)
    assert convs == factworld.generate(30, 4, 4, 3, MIX, seed=0)
    types = {q["type"] for c in convs for q in c["qas"]}
    assert types == set(factworld.QA_TYPES)
    vocab = set(factworld.vocabulary())
    for c in convs:
        state = {}
        for s, (utts, facts) in enumerate(zip(c["sessions"], c["facts"])):
            assert len(utts) == len(facts) == 4
            for u, f in zip(utts, facts):
                assert set(u.split()) <= vocab
                if f is not None:
                    e, a, v = f.split()
                    assert u.split()[0] == e and a in u.split() and (v == "none" or v in u.split())
                    state[(e, a)] = (v, s) if v != state.get((e, a), (None,))[0] else state[(e, a)]
        for q in c["qas"]:
            if q["type"] != "multi":
                e, a = q["question"].split()[2:]
                assert q["answer"] == state[(e, a)][0]
                assert q["needs"] == ([] if q["answer"] == "none" else [f"{e} {a} {q['answer']}"])


def test_memory_operations_on_a_constructed_memory():
    m = memory("alice city paris", "bob city rome", "alice job chef")
    slots = m.retrieve(method.manager_query("alice city oslo"), 3)
    assert slots == [0, 1, 2]  # alice+city (2 words) first, then 1-word matches oldest first
    assert method.correct_op("alice city oslo", m, slots) == "update m1"
    assert method.correct_op("alice city paris", m, slots) == "noop"
    assert method.correct_op("alice city none", m, slots) == "delete m1"
    assert method.correct_op("carol pet cat", m, m.retrieve(["carol", "pet"], 3)) == "insert"
    op = method.apply_op(m, *method.parse_op("update m1"), slots, "alice city oslo", 0)
    assert (op.kind, op.uid) == ("update", 0) and m.entries[0] == "alice city oslo"
    op = method.apply_op(m, *method.parse_op("delete m2"), slots, "bob city none", 1)
    assert (op.kind, op.uid) == ("delete", 1) and 1 not in m.entries
    op = method.apply_op(m, *method.parse_op("insert"), [], "carol pet cat", 1)
    assert op.uid == 3 and m.entries[3] == "carol pet cat" and m.tokens() == 9
    for text in ("delete m7", "update", "insert m1", "hello", "noop"):
        before = dict(m.entries)
        kind = method.apply_op(m, *method.parse_op(text), slots, "x y z", 1).kind
        assert m.entries == before and kind == ("noop" if text == "noop" else "invalid")
    assert method.parse_fact("alice city paris") == "alice city paris"
    assert method.parse_fact("nothing") is None and method.parse_fact("alice city") is None


def test_token_f1_and_compression_penalty_hand_cases():
    assert method.token_f1("rome", "rome") == 1.0
    assert method.token_f1("paris rome", "rome") == pytest.approx(2 / 3)
    assert method.token_f1("paris", "rome") == 0.0 and method.token_f1("none", "none") == 1.0
    # lambda * max(0, mem - 0.7 session) / session
    assert method.compression_penalty(10, 20, 0.3) == 0.0
    assert method.compression_penalty(21, 20, 0.3) == pytest.approx(0.3 * 7 / 20)
    conv = {"sessions": [["a b c d e"], ["f g h i j"]],
            "qas": [{"question": "what is alice city", "answer": "rome", "evidence_session": 1}]}
    m = memory("alice city paris", "alice city rome")  # 6 words over 10: penalty 0
    spec = method.Reward(0.3)  # the spec's basis: the dialogue's words, threshold 0.7
    assert method.session_reward(m, conv, 1, 2, spec, 3) == pytest.approx(2 / 3)
    assert method.session_reward(m, conv, 0, 2, spec, 3) == 0.0  # no QA's evidence in session 0
    # after session 0 only (5 words): 0.3 * (6 - 3.5) / 5 subtracted
    assert method.session_reward(m, conv, 1, 1, spec, 3) == pytest.approx(2 / 3 - 0.15)


def test_answerer_reads_only_the_memory():
    m = memory("alice city paris", "bob job chef", "alice job pilot", "bob city rome")
    assert method.answer(m, "what is alice city", 3) == "paris"
    assert method.answer(m, "what is job of person with city rome", 3) == "chef"
    assert method.answer(m, "what is carol pet", 3) == "none"
    m.insert("alice city oslo")  # a stale fact beside the new one: both are read
    assert method.answer(m, "what is alice city", 3) == "paris oslo"
    # the answerer's only inputs are the memory, the question and k; a conversation never enters
    import inspect

    assert list(inspect.signature(method.answer).parameters) == ["memory", "question", "k"]


class ScriptedAgent(method.Agent):
    """The gold fact from the utterance text, and `delete m1` whenever a memory is retrieved."""

    def __init__(self):
        super().__init__({}, None, max_new_tokens={}, k=3)
        self.gold = {}

    def _sample(self, role, prompts, temperature, generator):
        self.calls.append((role, Rollouts(*[torch.zeros(len(prompts), 1)] * 2, 0, *[torch.zeros(len(prompts), 1)] * 3,
                                          torch.arange(len(prompts)))))
        if role == "extractor":
            return [self.gold.get(p, "nothing") for p in prompts]
        return ["delete m1" if " m1 " in p else "insert" for p in prompts]


def scripted(convs, n, agent_cls=ScriptedAgent):
    ag = agent_cls()
    for c in convs:
        for utts, facts in zip(c["sessions"], c["facts"]):
            for u, f in zip(utts, facts):
                ag.gold[method.extractor_prompt(u)] = f or "nothing"
    return ag, method.rollout_conversations(ag, convs, n, 1.0)


def test_local_reroll_starts_from_a_deep_copy_and_never_touches_the_source():
    convs = factworld.generate(2, 3, 4, 2, MIX, seed=1)
    ag, traces = scripted(convs, 2)
    before = [(copy.deepcopy(t.memory), copy.deepcopy(t.snapshots), list(t.ops)) for t in traces]
    groups = method.local_rerolls(ag, [traces[:2], traces[2:]], p=1.0, m=3, temperature=1.0, rng=random.Random(0))
    assert len(groups) == 6 and all(len(g) == 3 for g in groups)  # every session of both conversations
    for t, (mem, snaps, ops) in zip(traces, before):
        assert t.memory == mem and t.snapshots == snaps and t.ops == ops
    for g in groups:
        s = g[0].sessions[0]
        src = next(t for t in traces if t.conv is g[0].conv and t.snapshots[s] == g[0].start)
        for t in g:
            assert t.memory is not src.snapshots[s] and t.memory is not src.memory
            assert t.start == src.snapshots[s] and t.ops  # it re-rolled session s only
            assert {o.session for o in t.ops} == {s}


def test_group_ids_keep_local_and_global_groups_apart():
    convs = factworld.generate(2, 3, 4, 2, MIX, seed=2)
    ag, traces = scripted(convs, 2)
    groups = method.local_rerolls(ag, [traces[:2], traces[2:]], p=0.5, m=2, temperature=1.0, rng=random.Random(3))
    rewards, gids, slot = score_groups(traces, groups, 2, method.Reward(0.3), 3)
    assert len(rewards) == 4 * 3 + 2 * len(groups) and len(slot) == len(rewards)
    # global: one group per (conversation, session) holding its n rollouts
    assert gids[:12].tolist() == [0, 1, 2, 0, 1, 2, 3, 4, 5, 3, 4, 5]
    # local: ids after every global one, one per re-roll group
    assert gids[12:].tolist() == [6 + j for j in range(len(groups)) for _ in range(2)]
    assert 0 < len(groups) < 6


def test_singleton_groups_raw_or_zero():
    r = torch.tensor([0.7, 0.2, 0.6, 0.4])
    g = torch.tensor([0, 1, 2, 2])  # two singletons beside a pair
    raw = group_advantages(r, g, std_normalize=True, singleton="raw")
    zero = group_advantages(r, g, std_normalize=True, singleton="zero")
    assert raw[:2].tolist() == pytest.approx([0.7, 0.2]) and zero[:2].tolist() == [0.0, 0.0]
    assert torch.allclose(raw[2:], zero[2:]) and raw[2] > 0 > raw[3]
    assert torch.equal(zero, group_advantages(r, g, std_normalize=True))  # default unchanged
    with pytest.raises(ValueError):
        group_advantages(r, g, std_normalize=True, singleton="mean")


def test_counterfactual_replay_leaves_out_one_op():
    conv = {"sessions": [["a b c"], ["d e f"]], "id": "x",
            "qas": [{"question": "what is alice city", "answer": "rome", "evidence_session": 1}]}
    t = method.Trace(conv, method.Memory(), [0, 1])
    slots = []
    t.ops.append(method.apply_op(t.memory, "insert", None, slots, "alice city paris", 0))
    t.ops.append(method.apply_op(t.memory, "update", 0, t.memory.retrieve(["alice", "city"], 3), "alice city rome", 1))
    assert method.replay(t.start, t.ops).entries == t.memory.entries
    assert method.replay(t.start, t.ops, skip=0).entries == {}  # the update's entry never existed
    # an op's value is read on its own session's reward: the insert's session 0 asks nothing (0);
    # without the update the answer is stale (F1 1 -> 0)
    assert method.counterfactual_values(t, False, method.Reward(0.0), 3, [0, 1]) == [0.0, 1.0]
    # a local re-roll of session 1 from a memory holding the stale fact: the update earns F1 1 at once
    local = method.Trace(conv, method.replay(t.start, t.ops[:1]), [1])
    local.ops.append(method.apply_op(local.memory, "update", 0, [0], "alice city rome", 1))
    assert method.counterfactual_values(local, True, method.Reward(0.0), 3, [0]) == [1.0]


def test_concat_pads_prompts_left_and_responses_right():
    def part(width, length, rows):
        return Rollouts(sequences=torch.ones(rows, width + length, dtype=torch.long),
                        attention_mask=torch.ones(rows, width + length, dtype=torch.long), prompt_width=width,
                        response_mask=torch.ones(rows, length, dtype=torch.bool), logprobs=torch.ones(rows, length),
                        entropies=torch.ones(rows, length), group_ids=torch.arange(rows))
    b = concat([part(3, 2, 2), part(5, 1, 1)])
    assert b.prompt_width == 5 and b.response_mask.shape == (3, 2)
    assert b.attention_mask[0].tolist() == [0, 0, 1, 1, 1, 1, 1] and b.attention_mask[2].tolist() == [1] * 6 + [0]
    assert b.response_mask.tolist() == [[True, True], [True, True], [True, False]]
    assert b.logprobs.sum() == 5 and b.group_ids.tolist() == [0, 1, 0]


class InsertEverything(ScriptedAgent):
    """Extracts every gold fact and always inserts it: stale, duplicate and retraction facts stay."""

    def _sample(self, role, prompts, temperature, generator):
        texts = super()._sample(role, prompts, temperature, generator)
        return texts if role == "extractor" else ["insert"] * len(prompts)


class Perfect(ScriptedAgent):
    """Extracts every gold fact and writes the oracle's correct operation."""

    def _sample(self, role, prompts, temperature, generator):
        texts = super()._sample(role, prompts, temperature, generator)
        if role == "extractor":
            return texts
        out = []
        for p in prompts:  # "<mgr> fact <mem> m1 e a v m2 ... <sep>": rebuild the shown memory
            fact, shown = p.split(" <mem> ")
            words = shown.replace(" <sep>", "").split()
            mem = method.Memory({j: " ".join(words[4 * j + 1:4 * j + 4]) for j in range(len(words) // 4)})
            out.append(method.correct_op(fact.split(" ", 1)[1], mem, list(mem.entries)))
        return out


def run_agent(agent_cls, convs):
    return scripted(convs, 1, agent_cls)[1]


def test_memory_failure_counts_stale_and_wrong_facts():
    """Issue 32: an agent that inserts everything scored a perfect 0 (nothing needed was missing)."""
    convs = factworld.generate(40, 8, 4, 3, MIX, seed=7)
    inserted = [method.memory_failure(t.memory, t.conv) for t in run_agent(InsertEverything, convs)]
    perfect = [method.memory_failure(t.memory, t.conv) for t in run_agent(Perfect, convs)]
    assert perfect == [0.0] * 40
    # exactly the keys that held another value before (changed, or retracted) fail: the old value stays
    for t, f in zip(run_agent(InsertEverything, convs), inserted):
        stated, last = {}, {}
        for fs in t.conv["facts"]:
            for x in fs:
                if x is not None:
                    e, a, v = x.split()
                    stated.setdefault((e, a), set()).add(v)
                    last[(e, a)] = v
        assert f == pytest.approx(sum(stated[key] - {"none"} != {last[key]} - {"none"} for key in stated) / len(stated))
    assert 0.2 < np.mean(inserted) < 0.8
    m = memory("alice city paris", "alice city rome", "bob job chef", "bob pet none", "carol pet cat")
    conv = {"facts": [["alice city rome", "bob job chef", "bob pet cat", None, "bob pet none"]]}
    # alice city: stale paris beside rome; carol pet: never stated; bob job right; bob pet retracted, stored as none
    assert method.memory_failure(m, conv) == pytest.approx(2 / 4)
    assert method.memory_failure(memory(), conv) == pytest.approx(2 / 3)  # retracted bob pet is right when absent


def test_compression_penalty_binds_at_the_mini_scale():
    """Issue 32: at 0.7 of the dialogue's words no FactWorld memory is ever penalised; against the
    gold facts' words (mini), inserting everything is, and a memory holding the current facts is not."""
    mini = method.Reward(**rc.load_paper("memory_r2")["mini"]["reward"])
    spec = method.Reward(mini.lam, 0.7, "dialogue")
    convs = factworld.generate(40, 8, 4, 3, MIX, seed=8)
    inserted, perfect = run_agent(InsertEverything, convs), run_agent(Perfect, convs)
    assert all(method.trace_penalty(t, spec) == 0 for t in inserted)
    assert all(method.trace_penalty(t, mini) > 0 for t in inserted)
    assert np.mean([method.trace_penalty(t, mini) > 0 for t in perfect]) < 0.1
    # the penalty is the same formula on another basis: 3 fact words per fact
    conv = {"sessions": [["alice : my city is rome", "bob : hi"]], "facts": [["alice city rome", None]]}
    assert method.Reward(0.3, 0.7, "facts").penalty(memory("alice city rome", "alice city paris"), conv, 1) == \
        pytest.approx(0.3 * (6 - 0.7 * 3) / 3)
    three = memory("alice city rome", "alice city paris", "alice city oslo")  # 9 words, the dialogue's 9
    assert method.Reward(0.3, 0.7, "dialogue").penalty(three, conv, 1) == pytest.approx(0.3 * (9 - 0.7 * 9) / 9)


def test_shared_and_separate_backbones_get_the_same_sft_steps_and_examples_per_role(tmp_path, monkeypatch):
    """Issue 32: the shared model trained as many steps on both roles as each per-role model on one."""
    from repro.papers.memory_r2 import data, sft

    seen = {}

    def spy(model, next_batch, *, steps, desc, **_):
        seen[desc.split()[1]] = [next_batch(i)["input_ids"] for i in range(steps)]
        return [0.0] * steps

    monkeypatch.setattr(sft, "train_causal_lm", spy)
    path = rc.REPO_ROOT / "params" / "memory_r2.yaml"
    run_stage("memory_r2", data, path, tmp_path / "data", ["data"], profile="smoke")
    m = run_stage("memory_r2", sft, path, tmp_path / "sft", ["policy", "sft", "rollout", "reward", "evaluate"],
                  [("data", tmp_path / "data")], profile="smoke")
    tok = json.loads((tmp_path / "data" / "tokenizer" / "tokenizer.json").read_text())["model"]["vocab"]
    steps = rc.load_paper("memory_r2")["smoke"]["sft"]["steps"]
    assert set(seen) == {"shared", "extractor", "manager"} and all(len(v) == steps for v in seen.values())
    for i in range(steps):
        shared = seen["shared"][i]
        ext, mgr = shared[shared[:, 0] == tok["<ext>"]], shared[shared[:, 0] == tok["<mgr>"]]
        assert len(ext) == len(mgr) == m["examples_per_role_and_step"] == len(shared) // 2
        # the per-role models see exactly the shared model's examples of their role, step by step
        assert torch.equal(ext[:, :seen["extractor"][i].shape[1]], seen["extractor"][i][:, :ext.shape[1]])
        assert torch.equal(mgr[:, :seen["manager"][i].shape[1]], seen["manager"][i][:, :mgr.shape[1]])
    assert set(m["val"]) == {"shared", "separate"} and set(m["test"]) == {"shared", "separate", "empty"}


def test_every_arm_selects_from_the_same_validation_points():
    assert validation_steps(48, 6, 1) == validation_steps(48, 6, 3) == [8, 16, 24, 32, 40, 48]
    # every curriculum stage (16 steps each) ends on a validation point
    assert {16, 32, 48} <= set(validation_steps(48, 6, 3))
    with pytest.raises(ValueError, match="val_points"):
        validation_steps(48, 4, 3)


def test_oracle_is_imperfect_as_configured():
    convs = factworld.generate(40, 4, 4, 3, MIX, seed=4)
    rng = random.Random(0)
    ex = [e for c in convs for e in method.oracle_examples(c, rng, drop=0.3, op_correct=0.0, k=3)]
    ext = [e for e in ex if e[0] == "extractor"]
    facts = sum(f is not None for c in convs for fs in c["facts"] for f in fs)
    kept = sum(t != "nothing" for _, _, t in ext)
    assert len(ext) == 40 * 16 and 0.6 < kept / facts < 0.8
    assert {t for r, _, t in ex if r == "manager"} == {"insert"}
    ex = [e for c in convs for e in method.oracle_examples(c, rng, drop=0.0, op_correct=1.0, k=3)]
    assert {t.split()[0] for r, _, t in ex if r == "manager"} == {"insert", "update", "delete", "noop"}


# --- effects and verdicts --------------------------------------------------------------------------
ARMS = ("grpo", "logo", "grpo_cm", "curriculum", "separate", "grpo_aa")
SEEDS = {arm: [100 + s for s in range(5)] if arm == "grpo_aa" else list(range(5)) for arm in ARMS}


def credit_triples(rng, corr: float, groups: int = 20, size: int = 6) -> list:
    """Ops in groups whose advantage correlates `corr` with the counterfactual value within groups,
    plus a random level per group (which a within-group correlation must ignore)."""
    out = []
    for g in range(groups):
        v = rng.normal(0, 1, size)
        a = corr * v + np.sqrt(1 - corr ** 2) * rng.normal(0, 1, size) + rng.normal(0, 3)
        out += [[f"g{g}", float(x), float(y)] for x, y in zip(v, a)]
    return out


def simulated_runs(gain: dict, credit_gap: float, fail_gain: float = 0.0, qas: int = 200, seed: int = 0,
                   updates: float = 1.0, collapse: float = 0.3, empty_gap: float = 0.4) -> dict:
    """Every arm of a seed starts from the same per-QA F1; an arm redraws 20% of its QAs (what another
    RL run changes), then raises a share `gain` of its QAs to F1 1 (negative: lowers to 0). 20 test
    conversations of 10 QAs. `updates`: UPDATE (and DELETE) ops per test conversation; `collapse`:
    the direct arm's validation memory failure rise; `empty_gap`: the F1 an empty memory lacks."""
    rng = np.random.default_rng(seed)
    runs = {}
    for s in range(5):
        base = rng.choice([0.0, 0.5, 1.0], qas)
        fail = rng.random(20) * 0.5
        for arm in ARMS:
            f1 = base.copy()
            if arm != "grpo":
                redo = rng.random(qas) < 0.2
                f1[redo] = rng.choice([0.0, 0.5, 1.0], int(redo.sum()))
                g = gain.get(arm, 0.0)
                f1[rng.random(qas) < abs(g)] = 1.0 if g > 0 else 0.0
            fl = np.clip(fail - (fail_gain if arm == "curriculum" else 0) + rng.normal(0, 0.01, 20), 0, 1)
            items = [{"id": f"c{i}", "f1": f1[i * 10:(i + 1) * 10].tolist(), "types": ["single"] * 10,
                      "memory_failure": float(fl[i])} for i in range(qas // 10)]
            val0 = (rng.random(16) * 0.4).tolist()
            last = np.clip(np.add(val0, collapse + rng.normal(0, 0.02, 16)), 0, 1).tolist()
            runs.setdefault(arm, []).append({
                "arm": arm, "seed": SEEDS[arm][s], "items": items, "updates": 10, "singletons": 0,
                "seconds_per_step": 1.0, "selected_step": 8, "validation_points": 7,
                "session_rollouts_per_step": 72 if arm in ("grpo_cm", "logo") else 64,
                "groups": {"global": 100, "local": 20}, "equal_reward_groups": {"global": 10, "local": 5},
                "penalty_nonzero": {"global": 0.5, "local": 0.4},
                "validation": [{"step": 0, "f1": 0.5, "memory_failure": float(np.mean(val0)), "failures": val0},
                               {"step": 48, "f1": 0.5, "memory_failure": float(np.mean(last)), "failures": last}],
                "test": {"f1": float(f1.mean()), "f1_by_type": {"single": float(f1.mean())}, "memory_entries": 5.0,
                         "memory_failure": float(fl.mean()), "penalty": 0.01, "penalty_nonzero": 0.5,
                         "ops_per_conversation": {"insert": 5.0, "update": updates * rng.uniform(0.5, 1.5),
                                                  "delete": updates * rng.uniform(0.5, 1.5)}},
                "credit": {"global": credit_triples(rng, 0.3), "local": credit_triples(rng, 0.3 + credit_gap)}})
    empty = [{"id": f"c{i}", "f1": np.clip(np.mean([r["items"][i]["f1"] for r in runs["separate"]], 0) - empty_gap,
                                          0, 1).tolist()} for i in range(qas // 10)]
    runs["_sft"] = {**SFT, "items": {"empty": empty}}
    return runs


SFT = {"test": {name: {"f1": 0.5, "f1_by_type": {"single": 0.5}, "memory_failure": 0.1, "memory_entries": 5.0,
                       "ops_per_conversation": {"insert": 5.0}} for name in ("shared", "separate", "empty")}}


def decide(runs):
    runs = dict(runs)
    return effects.decide(runs, runs.pop("_sft"))


def claims(runs):
    return {v["id"]: v for v in evaluate_claims(rc.load_paper("memory_r2")["claims"], decide(runs))}


def verdicts(runs):
    """metric -> the check's verdict (regime and controls aside)."""
    return {c["metric"]: c["verdict"] for v in claims(runs).values() for c in v["checks"]}


def test_effects_pair_arms_by_seed_and_item_with_conversations_as_clusters():
    runs = simulated_runs({}, 0.0)
    runs["logo"] = [{**r, "arm": "logo", "items": [{**c, "f1": [x + 0.1 * (r["seed"] + 1) for x in c["f1"]]}
                                                   for c in r["items"]]} for r in runs["grpo"]]
    m = decide(runs)
    e = m["r1"]["logo_vs_grpo"]
    assert e["value"] == pytest.approx(0.3) and e["samples"] == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.5])
    assert e["seeds"] == [0, 1, 2, 3, 4] and e["n_items"] == 200 and e["n_clusters"] == 20
    assert e["unit"] == "seeds x clusters"  # QAs of one conversation share its memory
    assert m["r1"]["compute_matched_ratio"]["value"] == pytest.approx(72 / 64)  # logo here is grpo's copy
    assert m["r2"]["updates_ratio"]["value"] == 1.0
    assert m["arms"]["logo"]["equal_reward_share"] == {"global": 0.1, "local": 0.25}
    tables = effects.report_tables(m, rc.load_paper("memory_r2")["mini"])
    assert "20 test conversations (200 QAs)" in tables and "| R1 LoGo - GRPO, F1 | +30.0 |" in tables
    assert "seed A/A" in tables and "25% of the local groups" in tables


def test_conversation_clusters_widen_the_f1_interval():
    """QAs of one conversation move together (one memory): resampled as independent items, the
    interval would be too narrow. Here whole conversations gain or lose together."""
    runs = simulated_runs({}, 0.0)
    rng = np.random.default_rng(5)
    shift = rng.choice([-0.5, 0.5], 20)  # the same conversations gain (or lose) in every seed
    runs["logo"] = [{**r, "arm": "logo", "items": [{**c, "f1": (np.asarray(c["f1"]) + shift[i] + rng.normal(0, 0.05, 10)).tolist()}
                                                   for i, c in enumerate(r["items"])]} for r in runs["grpo"]]
    e = decide(runs)["r1"]["logo_vs_grpo"]
    flat = hierarchical([np.subtract(effects.f1_items(a), effects.f1_items(b))
                         for a, b in zip(runs["logo"], runs["grpo"])])
    assert flat["value"] == pytest.approx(e["value"])
    assert e["ci"][1] - e["ci"][0] > 1.5 * (flat["ci"][1] - flat["ci"][0])


def test_null_effects_are_not_reproduced():
    v = verdicts(simulated_runs({}, 0.0))
    assert all(v[k] in (NOT_REPRODUCED, INCONCLUSIVE) for k in v if k != "r3.shared_minus_separate"), v
    # R3's null is "separate clearly better": shared loses more than 0.02
    assert verdicts(simulated_runs({"separate": 0.3}, 0.0))["r3.shared_minus_separate"] == NOT_REPRODUCED
    v = verdicts(simulated_runs({"grpo_cm": 0.3, "logo": -0.3}, -0.5))
    assert v["r1.logo_vs_compute_matched"] == v["r1.credit_local_minus_global"] == NOT_REPRODUCED
    v = verdicts(simulated_runs({"curriculum": -0.3}, 0.0, fail_gain=-0.2))
    assert v["r2.f1"] == v["r2.memory_failure"] == NOT_REPRODUCED


def test_clear_effects_are_reproduced():
    c = claims(simulated_runs({"logo": 0.3, "curriculum": 0.6, "separate": 0.0}, 0.5, fail_gain=0.2))
    assert {x["metric"] for v in c.values() for x in v["checks"] + v["regime_checks"]} | {"controls.seed_aa"} \
        == set(effects_metrics())
    assert all(v["verdict"] == REPRODUCED and v["regime"] == "met" for v in c.values()), \
        {k: (v["verdict"], v["reason"]) for k, v in c.items()}


@pytest.mark.parametrize("claim, broken", [
    ("R1", {"updates": 0.0}),  # the policy never uses UPDATE or DELETE
    ("R2", {"collapse": 0.0}),  # direct training does not collapse
    ("R3", {"empty_gap": 0.0}),  # the separate agent is no better than an empty memory
])
def test_a_failed_regime_is_inconclusive_whatever_the_checks_say(claim, broken):
    clear = dict(gain={"logo": 0.3, "curriculum": 0.6, "separate": 0.0}, credit_gap=0.5, fail_gain=0.2)
    assert claims(simulated_runs(**clear))[claim]["verdict"] == REPRODUCED
    v = claims(simulated_runs(**clear, **broken))[claim]
    assert v["regime"] == "not reached" and v["checks_verdict"] == REPRODUCED
    assert v["verdict"] == INCONCLUSIVE and v["reason"].startswith("regime not reached")
    null = claims(simulated_runs({"separate": 0.3, "grpo_cm": 0.3, "logo": -0.3, "curriculum": -0.6}, -0.5,
                                 fail_gain=-0.2, **broken))[claim]
    assert null["checks_verdict"] == NOT_REPRODUCED and null["verdict"] == INCONCLUSIVE


def test_seed_aa_control_passes_on_a_null_and_gates_every_claim():
    runs = simulated_runs({"logo": 0.3, "curriculum": 0.6, "separate": 0.0}, 0.5, fail_gain=0.2)
    ctrl = decide(runs)["controls"]["seed_aa"]
    assert ctrl["kind"] == "seed A/A" and ctrl["passed"] and ctrl["effect"]["aa_seeds"] == [100, 101, 102, 103, 104]
    assert ctrl["effect"]["seeds"] == [0, 1, 2, 3, 4]  # paired by position with the main seeds
    # the A/A arm trained on other seeds scores clearly better: no claim is decided
    runs["grpo_aa"] = [{**r, "items": [{**c, "f1": [1.0] * len(c["f1"])} for c in r["items"]]} for r in runs["grpo_aa"]]
    c = claims(runs)
    assert not decide(runs)["controls"]["seed_aa"]["passed"]
    assert all(v["verdict"] == INCONCLUSIVE and "control failed" in v["reason"] for v in c.values())


def test_credit_correlation_is_within_groups_and_ignores_group_size():
    """Issue 32: pooling groups measured their levels and their size. Groups of 4 and of 8 with the
    same within-group relation, and very different levels, give the same within-group correlation."""
    rng = np.random.default_rng(0)
    small, large = credit_triples(rng, 0.5, groups=200, size=4), credit_triples(rng, 0.5, groups=100, size=8)
    assert effects.within_group_correlation(small) == pytest.approx(0.5, abs=0.1)
    assert effects.within_group_correlation(large) == pytest.approx(0.5, abs=0.1)
    pooled = np.corrcoef(np.array([r[1:] for r in small]).T)[0, 1]
    assert pooled < 0.3  # what the old pooled correlation read: mostly the groups' levels
    assert effects.within_group_correlation([["a", 1.0, 0.0], ["b", 2.0, 1.0]]) is None  # singletons only


def test_credit_records_skip_equal_reward_groups():
    convs = factworld.generate(2, 3, 4, 2, MIX, seed=2)
    ag, traces = scripted(convs, 2)
    reward = method.Reward(0.3, 0.7, "facts")
    rewards, gids, slot = score_groups(traces, [], 2, reward, 3)
    rewards[slot[(id(traces[0]), 1)]] = rewards[slot[(id(traces[1]), 1)]] + 0.5  # group (conv 0, session 1) differs
    adv = group_advantages(rewards, gids, std_normalize=True)
    groups = [(traces[i:i + 2], s) for i in (0, 2) for s in range(3)]
    records, equal = credit_records(groups, False, slot, rewards, adv, reward, 3, 10, random.Random(0), "t")
    assert equal == 5  # the scripted agent acts alike in both rollouts: only the edited group differs
    assert {g for g, _, _ in records} == {"t-1"} and len(records) == sum(
        o.session == 1 and o.kind in ("insert", "update", "delete") for t in traces[:2] for o in t.ops)
    assert records and {a for _, _, a in records} == {float(adv[slot[(id(traces[0]), 1)]]),
                                                      float(adv[slot[(id(traces[1]), 1)]])}


def effects_metrics():
    from repro.papers.memory_r2 import ANALYSIS_METRICS

    return ANALYSIS_METRICS


def test_bad_params_are_rejected_naming_file_and_key(tmp_path):
    params = rc.load_paper("memory_r2")
    params["mini"]["rl"]["singleton"] = "mean"
    path = tmp_path / "memory_r2.yaml"
    path.write_text(yaml.safe_dump(params))
    with pytest.raises(rc.ParamsError, match=r"memory_r2.yaml.*mini.rl.singleton"):
        rc.load_paper("memory_r2", path)
    params = rc.load_paper("memory_r2")
    params["mini"]["arms"]["logo"]["local"]["p"] = 0
    path.write_text(yaml.safe_dump(params))
    with pytest.raises(rc.ParamsError, match=r"mini.arms.logo.local.p"):
        rc.load_paper("memory_r2", path)


# --- the paper profile's code path on a tiny local checkpoint ------------------------------------
@pytest.fixture
def paper_setup(tmp_path):
    """The `paper` section with hub names swapped for a local BPE tokenizer, a tiny Qwen2 checkpoint
    saved with save_pretrained, and local JSON-lines conversations read through datasets.load_dataset."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from conftest import save_bpe_tokenizer

    convs = {name: factworld.generate(3, sessions, 2, 2, MIX, seed=i)
             for i, (name, sessions) in enumerate((("train_s1", 1), ("train_s2", 2), ("sft", 2), ("val", 2), ("test", 2)))}
    for name, rows in convs.items():
        (tmp_path / f"{name}.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    text = [u for rows in convs.values() for c in rows for s in c["sessions"] for u in s] + \
        ["<ext> <sep> <mgr> <mem> m1 m2 insert update delete noop nothing"]
    vocab = save_bpe_tokenizer(text, tmp_path / "tok", eos_token="<eos>")
    torch.manual_seed(0)
    Qwen2ForCausalLM(Qwen2Config(vocab_size=vocab, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                 num_key_value_heads=1, intermediate_size=64,
                                 max_position_embeddings=512)).save_pretrained(tmp_path / "ckpt")
    params = copy.deepcopy(rc.load_paper("memory_r2"))
    sec = params["paper"]
    sec["data"]["source"]["splits"] = {name: {"load": {"path": "json", "data_files": str(tmp_path / f"{name}.jsonl")}}
                                       for name in convs}
    sec["data"]["tokenizer"] = str(tmp_path / "tok")
    sec["policy"]["pretrained"] = str(tmp_path / "ckpt")
    sec["policy"]["attn_implementation"] = "sdpa"
    sec["rollout"].update(sessions=2, conversations_per_step=1, extractor_tokens=4, manager_tokens=3, top_k=2)
    sec["rl"].update(seeds=[0], aa_seeds=[100], steps=2, val_points=2, credit_every=1, credit_groups=4, loss_max_len=4)
    for name, arm in sec["arms"].items():
        arm["group_size"] = 3 if name == "grpo_cm" else 2
        if "local" in arm:
            arm["local"].update(p=1.0, m=2)
    sec["arms"]["curriculum"]["curriculum"] = [1, 2]
    path = tmp_path / "memory_r2.yaml"
    path.write_text(yaml.safe_dump(params))
    return tmp_path, path


def test_paper_profile_chain_on_local_checkpoint(paper_setup):
    from repro.papers.memory_r2 import analysis, data, rl, sft

    tmp, path = paper_setup
    r = tmp / "results"
    d = run_stage("memory_r2", data, path, r / "data", ["data"])
    assert d["rows"]["test"] == 3 and d["vocab_size"] > 100
    s = run_stage("memory_r2", sft, path, r / "sft", ["policy", "sft", "rollout", "reward", "evaluate"],
                  [("data", r / "data")])
    assert s["examples"] == {"extractor": 0, "manager": 0} and set(s["test"]) == {"shared", "separate", "empty"}
    for role in ("shared", "extractor", "manager"):
        assert json.loads((r / "sft" / role / "config.json").read_text())["model_type"] == "qwen2"
    inputs = [("sft", r / "sft")]
    sections = ["rollout", "reward", "rl", "evaluate", "arms"]
    for arm, seed in [(a, 0) for a in ("grpo", "logo", "grpo_cm", "curriculum", "separate")] + [("grpo", 100)]:
        out = r / "rl" / arm / f"seed{seed}"
        m = run_stage("memory_r2", rl, path, out, sections, [("data", r / "data"), ("sft", r / "sft")],
                      [("arm", arm), ("seed", str(seed))])
        history = json.loads((out / "history.json").read_text())
        assert m["arm"] == arm and m["updates"] == 4 and len(history) == 2
        # every arm: the SFT start and the same 2 validation points are its checkpoint candidates
        assert [v["step"] for v in json.loads((out / "validation.json").read_text())] == [0, 1, 2]
        # LoGo arms re-roll every session (p = 1) in groups of 2 beside the global groups of 2 (3 for grpo_cm)
        n = 3 if arm == "grpo_cm" else 2
        for h in history:
            assert h["session_rollouts"] == n * h["length"] + (2 * h["length"] if arm in ("logo", "curriculum", "separate") else 0)
        inputs.append((f"rl_{arm}_seed{seed}", out))
    assert [h["length"] for h in json.loads((r / "rl" / "curriculum" / "seed0" / "history.json").read_text())] == [1, 2]
    # same params and seed -> the same run
    again = run_stage("memory_r2", rl, path, r / "again", sections,
                      [("data", r / "data"), ("sft", r / "sft")], [("arm", "logo"), ("seed", "0")])
    assert again["test"] == json.loads((r / "rl" / "logo" / "seed0" / "metrics.json").read_text())["metrics"]["test"]
    for f in ("items.json", "validation.json", "credit.json"):
        assert (r / "again" / f).read_text() == (r / "rl" / "logo" / "seed0" / f).read_text()
    m = run_stage("memory_r2", analysis, path, r / "analysis", ["data", "rollout", "reward", "rl", "arms"], inputs)
    assert set(m["arms"]) == {"grpo", "logo", "grpo_cm", "curriculum", "separate", "grpo_aa"}
    assert m["r1"]["logo_vs_grpo"]["ci"] == [None, None]  # one seed: no interval
    assert m["controls"]["seed_aa"]["effect"]["aa_seeds"] == [100]
    assert (r / "analysis" / "f1_by_type.png").stat().st_size > 1000
    # the SFT start is a candidate: when no validation point beats it, the test reads the SFT model
    sft_best = r / "sft_best"
    shutil.copytree(r / "sft", sft_best)
    val = json.loads((sft_best / "validation.json").read_text())
    val["shared"] = [{**c, "f1": [1.0] * len(c["f1"])} for c in val["shared"]]
    (sft_best / "validation.json").write_text(json.dumps(val))
    meta = json.loads((sft_best / "metrics.json").read_text())  # re-record the edited file's hash
    meta["provenance"]["outputs_sha256"] = integrity.record(sft_best)
    (sft_best / "metrics.json").write_text(json.dumps(meta))
    m = run_stage("memory_r2", rl, path, r / "from_sft", sections, [("data", r / "data"), ("sft", sft_best)],
                  [("arm", "logo"), ("seed", "0")])
    assert m["selected_step"] == 0
    assert json.loads((r / "from_sft" / "items.json").read_text()) == json.loads((r / "sft" / "items.json").read_text())["shared"]
