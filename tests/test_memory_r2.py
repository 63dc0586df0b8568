"""memory_r2: FactWorld, the memory agent's operations, answerer, rewards, LoGo's groups, the credit
diagnostic, the claims' effects (null and clear), params validation and the paper-profile chain."""
import copy
import json
import random

import numpy as np
import pytest
import torch
import yaml

from conftest import run_stage
from repro.core import config as rc
from repro.data import factworld
from repro.papers.memory_r2 import effects, method
from repro.papers.memory_r2.rl import score_groups
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
    assert method.session_reward(m, conv, 1, 2, 0.3, 3) == pytest.approx(2 / 3)
    assert method.session_reward(m, conv, 0, 2, 0.3, 3) == 0.0  # no QA's evidence in session 0
    # after session 0 only (5 words): 0.3 * (6 - 3.5) / 5 subtracted
    assert method.session_reward(m, conv, 1, 1, 0.3, 3) == pytest.approx(2 / 3 - 0.15)


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
    conv = {"qas": [{"question": "what is alice city", "answer": "oslo", "evidence_session": 0, "needs": ["alice city oslo"]},
                    {"question": "what is bob pet", "answer": "cat", "evidence_session": 0, "needs": ["bob pet cat"]}]}
    assert method.memory_failure(m, conv) == 0.5


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


def scripted(convs, n):
    ag = ScriptedAgent()
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
    rewards, gids, slot = score_groups(traces, groups, 2, 0.3, 3)
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
    assert method.counterfactual_values(t, False, 0.0, 3, [0, 1]) == [0.0, 1.0]
    # a local re-roll of session 1 from a memory holding the stale fact: the update earns F1 1 at once
    local = method.Trace(conv, method.replay(t.start, t.ops[:1]), [1])
    local.ops.append(method.apply_op(local.memory, "update", 0, [0], "alice city rome", 1))
    assert method.counterfactual_values(local, True, 0.0, 3, [0]) == [1.0]


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
ARMS = ("grpo", "logo", "grpo_cm", "curriculum", "separate")


def simulated_runs(gain: dict, credit_gap: float, fail_gain: float = 0.0, qas: int = 200, seed: int = 0) -> dict:
    """Every arm of a seed starts from the same per-QA F1; an arm redraws 20% of its QAs (what another
    RL run changes), then raises a share `gain` of its QAs to F1 1 (negative: lowers to 0)."""
    rng = np.random.default_rng(seed)
    runs = {}
    for s in range(3):
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
            runs.setdefault(arm, []).append({
                "arm": arm, "seed": s, "items": items, "updates": 10, "singletons": 0, "seconds_per_step": 1.0,
                "session_rollouts_per_step": 72 if arm in ("grpo_cm", "logo") else 64,
                "test": {"f1": float(f1.mean()), "f1_by_type": {"single": float(f1.mean())}, "memory_entries": 5.0,
                         "ops_per_conversation": {"insert": 5.0}},
                "credit": {"correlation": {"global": 0.2 + rng.normal(0, 0.02),
                                           "local": 0.2 + credit_gap + rng.normal(0, 0.02)}}})
    return runs


SFT = {"test": {"shared": {"f1": 0.5, "f1_by_type": {"single": 0.5}, "memory_failure": 0.1, "memory_entries": 5.0,
                           "ops_per_conversation": {"insert": 5.0}}}}


def verdicts(runs):
    m = effects.decide(runs, SFT)
    checks = [c for v in evaluate_claims(rc.load_paper("memory_r2")["claims"], m) for c in v["checks"]]
    return {c["metric"]: c["verdict"] for c in checks}


def test_effects_pair_arms_by_seed_and_item():
    runs = simulated_runs({}, 0.0)
    runs["logo"] = [{**r, "arm": "logo", "items": [{**c, "f1": [x + 0.1 * (r["seed"] + 1) for x in c["f1"]]}
                                                   for c in r["items"]]} for r in runs["grpo"]]
    m = effects.decide(runs, SFT)
    e = m["r1"]["logo_vs_grpo"]
    assert e["value"] == pytest.approx(0.2) and e["samples"] == pytest.approx([0.1, 0.2, 0.3])
    assert e["seeds"] == [0, 1, 2] and e["n_items"] == 600 and e["unit"] == "seeds x items"
    assert m["r1"]["compute_matched_ratio"]["value"] == pytest.approx(72 / 64)  # logo here is grpo's copy
    assert m["r2"]["updates_ratio"]["value"] == 1.0
    tables = effects.report_tables(m, rc.load_paper("memory_r2")["mini"])
    assert "20 test conversations (200 QAs)" in tables and "0 met in all runs" in tables and "| R1 LoGo - GRPO, F1 | +20.0 |" in tables


def test_null_effects_are_not_reproduced():
    v = verdicts(simulated_runs({}, 0.0))
    assert all(v[k] in (NOT_REPRODUCED, INCONCLUSIVE) for k in v if k != "r3.shared_minus_separate"), v
    # R3's null is "separate clearly better": shared loses more than 0.02
    assert verdicts(simulated_runs({"separate": 0.3}, 0.0))["r3.shared_minus_separate"] == NOT_REPRODUCED
    v = verdicts(simulated_runs({"grpo_cm": 0.3, "logo": -0.3}, -0.3))
    assert v["r1.logo_vs_compute_matched"] == v["r1.credit_local_minus_global"] == NOT_REPRODUCED
    v = verdicts(simulated_runs({"curriculum": -0.3}, 0.0, fail_gain=-0.2))
    assert v["r2.f1"] == v["r2.memory_failure"] == NOT_REPRODUCED


def test_clear_effects_are_reproduced():
    v = verdicts(simulated_runs({"logo": 0.3, "curriculum": 0.6, "separate": 0.0}, 0.3, fail_gain=0.2))
    assert set(v) == set(effects_metrics()) and all(x == REPRODUCED for x in v.values()), v


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
    sec["rl"].update(seeds=[0], steps=2, val_every=1, credit_every=1, credit_ops=8, loss_max_len=4)
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
    s = run_stage("memory_r2", sft, path, r / "sft", ["policy", "sft", "rollout", "evaluate"], [("data", r / "data")])
    assert s["examples"]["shared"] == 0 and set(s["test"]) == {"shared", "separate"}
    for role in ("shared", "extractor", "manager"):
        assert json.loads((r / "sft" / role / "config.json").read_text())["model_type"] == "qwen2"
    inputs = [("sft", r / "sft")]
    for arm in ("grpo", "logo", "grpo_cm", "curriculum", "separate"):
        m = run_stage("memory_r2", rl, path, r / "rl" / arm / "seed0", ["rollout", "reward", "rl", "evaluate", "arms"],
                      [("data", r / "data"), ("sft", r / "sft")], [("arm", arm), ("seed", "0")])
        history = json.loads((r / "rl" / arm / "seed0" / "history.json").read_text())
        assert m["arm"] == arm and m["updates"] == 4 and len(history) == 2
        # LoGo arms re-roll every session (p = 1) in groups of 2 beside the global groups of 2 (3 for grpo_cm)
        n = 3 if arm == "grpo_cm" else 2
        for h in history:
            assert h["session_rollouts"] == n * h["length"] + (2 * h["length"] if arm in ("logo", "curriculum", "separate") else 0)
        inputs.append((f"rl_{arm}_seed0", r / "rl" / arm / "seed0"))
    assert [h["length"] for h in json.loads((r / "rl" / "curriculum" / "seed0" / "history.json").read_text())] == [1, 2]
    # same params and seed -> the same run
    again = run_stage("memory_r2", rl, path, r / "again", ["rollout", "reward", "rl", "evaluate", "arms"],
                      [("data", r / "data"), ("sft", r / "sft")], [("arm", "logo"), ("seed", "0")])
    assert again["test"] == json.loads((r / "rl" / "logo" / "seed0" / "metrics.json").read_text())["metrics"]["test"]
    for f in ("items.json", "validation.json"):
        assert (r / "again" / f).read_text() == (r / "rl" / "logo" / "seed0" / f).read_text()
    m = run_stage("memory_r2", analysis, path, r / "analysis", ["data", "rollout", "reward", "rl", "arms"], inputs)
    assert set(m["arms"]) == {"grpo", "logo", "grpo_cm", "curriculum", "separate"}
    assert m["r1"]["logo_vs_grpo"]["ci"] == [None, None]  # one seed: no interval
    assert (r / "analysis" / "f1_by_type.png").stat().st_size > 1000
