"""Mem2Evolve: the DSL task generator, the program search, both memories (tool gate, deduplication,
demotion, experience prior), the leak audit, Pass@1, the claim decisions; the paper-profile code path
on a local task file and a tiny local checkpoint."""
import copy
import json
import random

import numpy as np
import pytest
import yaml

from conftest import run_stage

from repro.core import config as rc
from repro.data.programs import CATEGORIES, PRIMITIVES, execute, generate_tasks, redundant, well_typed
from repro.papers.mem2evolve import effects, method
from repro.papers.mem2evolve.method import Agent, AssetMemory, ExperienceMemory, Task, Trajectory
from repro.report.verdicts import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED, evaluate_claims

MINI = rc.load_paper("mem2evolve")["mini"]
SOURCE = {**MINI["data"]["source"], "stream_per_category": 6, "heldout_per_category": 3, "transfer_per_category": 4}
PRIMS = {p: (p,) for p in PRIMITIVES}


def hand_task(program, inputs, tid="t0", category="lists"):
    c = CATEGORIES[category]
    return Task(tid, category, c["in"], c["out"], category, [[x, execute(program, x)] for x in inputs])


def assets(**kw):
    p = {"min_len": 2, "max_len": 4, "probes": 8, "demote_after": 3, "demote_below": 0.25, **kw}
    return AssetMemory(**p)


def test_generated_tasks_are_typed_reproducible_and_not_redundant():
    a, b = generate_tasks(SOURCE, 3), generate_tasks(SOURCE, 3)
    assert a == b and a != generate_tasks(SOURCE, 4)
    assert {len(a["stream"]), len(a["heldout"]), len(a["transfer"])} == {36, 18, 4}
    assert {r["category"] for r in a["transfer"]} == {"list_stats"}
    for r in a["stream"] + a["heldout"]:
        prog = json.loads(r["program"])
        assert well_typed(prog, r["in_type"], r["out_type"]) and r["depth"] == len(prog)
        vis, hid = json.loads(r["visible"]), json.loads(r["hidden"])
        assert len(vis) == 3 and len(hid) == 10
        assert all(execute(prog, x) == y for x, y in vis + hid)
        assert not redundant(prog, [x for x, _ in vis + hid], [y for _, y in vis + hid])
    assert redundant(["rotate", "rotate", "dist"], ["NNE", "WS", "SSSE"], [3, 2, 4])


def test_search_finds_a_known_program_within_budget_and_tools_reach_deeper():
    target = ["evens", "sort", "tail", "cumsum"]  # depth 4: out of reach of primitives at this budget
    rng = random.Random(0)
    inputs = [[rng.randint(-9, 9) for _ in range(7)] for _ in range(3)]
    task = hand_task(target, inputs)
    assert method.search(task, PRIMS, 200, 4, random.Random(0)).solved is False
    vocab = PRIMS | {"T0": ("evens", "sort"), "T1": ("tail", "cumsum")}
    traj = method.search(task, vocab, 200, 4, random.Random(0))
    assert traj.solved and traj.evaluated <= 200 and traj.program == ["T0", "T1"]
    assert traj.expanded == target and traj.tried_tools == {"T0", "T1"}
    # a depth-2 target is found from primitives alone, and steps that change nothing are dropped
    easy = hand_task(["uniq", "rev"], inputs)
    t = method.search(easy, PRIMS, 500, 4, random.Random(1))
    assert t.solved and execute(t.expanded, inputs[0]) == execute(["uniq", "rev"], inputs[0]) and len(t.program) <= 2


def test_pass_at_1_on_hand_cases():
    # visible inputs without negative numbers: `absl` fits them, the target (`pos` then nothing) does not
    vis = hand_task(["pos"], [[1, 2, 3], [4, 5], [7, 1, 2]])
    hidden = [[x, execute(["pos"], x)] for x in ([-1, 2], [3, -4, 5])]
    assert method.passes(["pos"], vis.visible) and method.passes(["pos"], hidden)
    assert method.passes(["absl"], vis.visible) and not method.passes(["absl"], hidden)  # spurious: Pass@1 0
    assert not method.passes([], hidden)  # no program submitted


def test_a_new_tool_must_pass_its_tests_and_duplicates_are_refused():
    mem = assets()
    tests = [[[3, -2, 4, 2, 4], [-2, 2, 4]], [[6, 1], [6]]]  # (evens, sort, uniq) on visible inputs
    tool, why = mem.propose(("evens", "sort", "uniq"), [[[3, -2, 4, 2], [4, 2, -2]]], "lists", 0)
    assert tool is None and why == "fails its tests"
    tool, why = mem.propose(("evens", "sort", "uniq"), tests, "lists", 0)
    assert why == "kept" and tool.in_type == tool.out_type == "L" and mem.active() == [tool]
    # the same behaviour written another way, and a composition equal to one primitive
    assert mem.propose(("evens", "uniq", "sort"), tests, "lists", 1) == (None, "duplicate")
    assert mem.propose(("rev", "rev", "sort"), [[[2, 1], [1, 2]]], "lists", 1) == (None, "duplicate")
    assert mem.propose(("sort",), [[[2, 1], [1, 2]]], "lists", 1) == (None, "length")
    assert dict(mem.log) == {"fails its tests": 1, "kept": 1, "duplicate": 2, "length": 1}


def test_a_tool_that_fails_is_demoted_and_no_longer_recruited():
    mem = assets()
    good, _ = mem.propose(("evens", "sort"), [[[3, 2, -4], [-4, 2]]], "lists", 0)
    bad, _ = mem.propose(("odds", "dbl"), [[[3, 2], [6]]], "lists", 0)

    def traj(solved, program, tried):
        return Trajectory("t", "lists", solved, program, [], 1.0 if solved else 0.3, 10, set(tried))

    mem.record(traj(True, [good.name], [good.name, bad.name]))
    for i in range(3):
        demoted = mem.record(traj(False, [bad.name, "sort"], [good.name, bad.name]))
        assert demoted == ([bad.name] if i == 2 else [])
    assert (good.wins, good.fails, good.tries, bad.fails) == (1, 0, 4, 3)
    assert not bad.active and good.active
    assert mem.recruit("L", "L", 8, lambda t: 0) == [good]
    # its behaviour is free again: the same composition may be proposed anew later
    assert mem.propose(("odds", "dbl"), [[[3, 2], [6]]], "lists", 5)[1] == "kept"


def test_experience_prior_generalises_successes_and_diagnoses_failures():
    exp = ExperienceMemory(alpha=1.0, unigram=0.5, backoff=0.1, partial=0.25, fail_length=0.5, explore=0.25)
    opts = ["evens", "sort", "rev"]
    before = exp.weights("lists", method.START, opts)
    assert before == pytest.approx([1 / 3] * 3)
    exp.add(Trajectory("a", "lists", True, ["evens", "sort"], ["evens", "sort"], 1.0, 5))
    w = exp.weights("lists", method.START, opts)
    assert w[0] > w[1] > w[2] and sum(w) == pytest.approx(1) and min(w) >= 0.25 / 3
    assert exp.weights("lists", "evens", opts)[1] == max(exp.weights("lists", "evens", opts))
    assert exp.weights("strings", method.START, opts)[0] > exp.weights("strings", method.START, opts)[2]  # back-off
    lw = exp.length_weights("lists", [1, 2, 3, 4])
    assert lw[1] == max(lw)
    for i in range(6):  # failures: the solutions are longer than what the search reached
        exp.add(Trajectory(f"f{i}", "lists", False, ["rev"], ["rev"], 0.0, 200))
    assert exp.length_weights("lists", [1, 2, 3, 4])[3] > lw[3]
    assert exp.support(("evens", "sort")) == 1 and exp.support(("sort", "evens")) == 0


def test_full_agent_mines_recurring_parts_with_tests_from_the_visible_traces():
    mem_p = {**MINI["memory"], "min_support": 2}
    agent = Agent(True, True, MINI["search"], mem_p)
    rng = random.Random(0)
    inputs = [[rng.randint(-9, 9) for _ in range(6)] for _ in range(3)]
    first = hand_task(["evens", "sort", "rev"], inputs, "a")
    agent.learn(first, Trajectory("a", "lists", True, ["evens", "sort", "rev"], ["evens", "sort", "rev"], 1.0, 3))
    assert [t.body for t in agent.assets.tools.values()] == [("evens", "sort", "rev")]
    second = hand_task(["evens", "sort", "tail", "cumsum"], inputs, "b")
    traj = Trajectory("b", "lists", True, ["evens", "sort", "tail", "cumsum"], ["evens", "sort", "tail", "cumsum"], 1.0, 9)
    agent.experience.add(traj)  # as learn() does before it mines: the part now recurs in two successes
    cands = dict(agent.tool_candidates(second, traj))
    assert set(cands) == {("evens", "sort", "tail", "cumsum"), ("evens", "sort")}
    assert cands[("evens", "sort")] == [[x, execute(["evens", "sort"], x)] for x in inputs]
    assets_only = Agent(False, True, MINI["search"], mem_p)
    assert [c for c, _ in assets_only.tool_candidates(second, traj)] == [("evens", "sort", "tail", "cumsum")]


def clean_run(source=SOURCE):
    rows = generate_tasks(source, 0)
    tasks = {r["task_id"]: {"visible": json.loads(r["visible"]), "hidden": json.loads(r["hidden"])}
             for rs in rows.values() for r in rs}
    agent = Agent(True, True, MINI["search"], MINI["memory"])
    for r in rows["stream"]:
        t = Task(r["task_id"], r["category"], r["in_type"], r["out_type"], r["description"], json.loads(r["visible"]))
        agent.learn(t, agent.solve(t, 100, random.Random(r["task_id"]))[0])
    return rows, tasks, agent


def test_no_hidden_test_output_reaches_a_memory_and_a_constructed_leak_is_caught():
    _, tasks, agent = clean_run()
    assert agent.experience.entries and agent.assets.tools
    assert method.audit(agent.experience, agent.assets, tasks) == []
    # leak 1: an outcome taken from the judge (hidden tests) instead of the visible examples
    worked = next(e for e in agent.experience.entries if e["outcome"] == "worked")
    leaky = copy.deepcopy(agent.experience)
    next(e for e in leaky.entries if e["task_id"] == worked["task_id"])["outcome"] = "failed"
    assert any("does not follow from the visible examples" in v for v in method.audit(leaky, agent.assets, tasks))
    # leak 2: a hidden test's output copied into a tool record
    tid, t = next((k, v) for k, v in tasks.items() if isinstance(v["hidden"][0][1], (list, str))
                  and len(json.dumps(v["hidden"][0][1])) >= 6
                  and json.dumps(v["hidden"][0][1]) not in {json.dumps(y) for _, y in v["visible"]})
    leaky_assets = copy.deepcopy(agent.assets)
    next(iter(leaky_assets.tools.values())).category = t["hidden"][0][1]
    assert [v for v in method.audit(agent.experience, leaky_assets, tasks) if v.startswith(f"{tid}: hidden value")]


def test_effect_helpers_on_hand_cases():
    assert effects.slope([0, 0, 1, 1]) == pytest.approx(1.2)
    assert effects.slope([1, 1, 1, 1]) == pytest.approx(0)
    assert effects.curve([1, 0, 1, 1, 0, 0], 3) == [0.5, 1.0, 0.0]
    assert effects.drawdown([0.2, 0.6, 0.3, 0.5, 0.1]) == pytest.approx(0.5)
    assert effects.drawdown([0.1, 0.2, 0.3]) == 0.0


ARMS = ("static", "experience", "asset", "full")


def simulated_runs(heldout: dict[str, float], growth: dict[str, float], wobble: dict[str, float] | None = None,
                   tasks: int = 120, online: int = 150, seed: int = 0, mirror: bool = False) -> dict:
    """Each (order, seed) run shares one draw of task difficulty across arms; an arm passes a held-out
    task when the task's draw is below its rate; its online Pass@1 rises linearly by `growth` over the
    stream and oscillates with amplitude `wobble`."""
    rng, wobble = np.random.default_rng(seed), wobble or {}
    runs = {a: [] for a in ARMS}
    for order in range(5):
        for s in range(2):
            u_held, u_on, phase = rng.random(tasks), rng.random(online), rng.random() * 6
            if mirror:  # a palindrome: the least-squares slope of every run is exactly 0
                u_on = np.concatenate([u_on[:online // 2], u_on[:online // 2][::-1]])
            for a in ARMS:
                p_on = (0.4 + growth.get(a, 0.0) * np.linspace(0, 1, online)
                        + wobble.get(a, 0.0) * np.sin(np.arange(online) / 4.0 + phase))
                items = ([{"phase": "online", "task_id": f"o{i}", "passed": bool(u_on[i] < p_on[i])} for i in range(online)] +
                         [{"phase": "heldout", "task_id": f"h{i}", "passed": bool(u_held[i] < heldout[a])} for i in range(tasks)])
                runs[a].append({"arm": a, "order": order, "seed": s, "items": items})
    return runs


def verdicts(runs):
    m = {"v1": {name: effects.paired_heldout(runs, a, b) for name, (a, b) in effects.PAIRS.items()}}
    full, asset = runs["full"], {effects.key(r): r for r in runs["asset"]}
    dd = [effects.drawdown(effects.curve(effects.online(r), 10)) for r in full]
    dd_a = [effects.drawdown(effects.curve(effects.online(asset[effects.key(r)]), 10)) for r in full]
    m["v2"] = {"full_slope": effects.mean_ci([effects.slope(effects.online(r)) for r in full]),
               "drawdown_full_minus_asset": effects.paired_diff(dd, dd_a)}
    checks = [c for v in evaluate_claims(rc.load_paper("mem2evolve")["claims"], m) for c in v["checks"]]
    return {c["metric"]: c["verdict"] for c in checks}


def test_null_effects_are_not_reproduced():
    # identical arms on identical draws and flat online curves (slopes 0 up to rounding)
    v = verdicts(simulated_runs({a: 0.45 for a in ARMS}, {}, mirror=True))
    assert all(x in (NOT_REPRODUCED, INCONCLUSIVE) for x in v.values()), v
    # zero-width intervals on 0, which "> 0" and "< 0" reject
    assert v["v1.full_minus_asset"] == v["v2.drawdown_full_minus_asset"] == NOT_REPRODUCED
    # the order reversed, and a falling full arm that oscillates more than asset-only
    v = verdicts(simulated_runs({"static": 0.6, "experience": 0.5, "asset": 0.4, "full": 0.3},
                                {"full": -0.3}, {"full": 0.3}))
    assert all(x == NOT_REPRODUCED for x in v.values()), v


def test_clear_effects_are_reproduced():
    v = verdicts(simulated_runs({"static": 0.3, "experience": 0.45, "asset": 0.6, "full": 0.75},
                                {"full": 0.4}, {"asset": 0.3}))
    assert set(v) == {"v1.full_minus_asset", "v1.asset_minus_experience", "v1.experience_minus_static",
                      "v2.full_slope", "v2.drawdown_full_minus_asset"}
    assert all(x == REPRODUCED for x in v.values()), v


def test_bad_params_are_rejected_naming_file_and_key(tmp_path):
    params = copy.deepcopy(rc.load_paper("mem2evolve"))
    params["mini"]["search"]["static_target"] = [0.3, 1.5]
    params["smoke"]["arms"]["full"]["assets"] = "yes"
    path = tmp_path / "mem2evolve.yaml"
    path.write_text(yaml.safe_dump(params))
    with pytest.raises(rc.ParamsError, match=r"mem2evolve.yaml: key 'smoke.arms.full.assets'"):
        rc.load_paper("mem2evolve", path)
    params["smoke"]["arms"]["full"]["assets"] = True
    path.write_text(yaml.safe_dump(params))
    with pytest.raises(rc.ParamsError, match=r"key 'mini.search.static_target.1'"):
        rc.load_paper("mem2evolve", path)


@pytest.fixture
def paper_setup(tmp_path):
    """The `paper` section with the hub names swapped for a local task file (read through
    datasets.load_dataset) and a tiny Qwen2 checkpoint with a local BPE tokenizer."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from conftest import save_bpe_tokenizer

    rows = generate_tasks({**SOURCE, "stream_per_category": 2, "heldout_per_category": 1, "transfer_per_category": 2}, 5)
    lines = [json.dumps({**r, "split": split}) for split, rs in rows.items() for r in rs]
    (tmp_path / "tasks.jsonl").write_text("\n".join(lines))
    texts = [" ".join(PRIMITIVES)] * 4 + [r["description"] + " " + r["visible"] for r in rows["stream"]]
    vocab = save_bpe_tokenizer(texts, tmp_path / "ckpt")
    torch.manual_seed(0)
    Qwen2ForCausalLM(Qwen2Config(vocab_size=vocab, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                 num_key_value_heads=2, intermediate_size=64, max_position_embeddings=4096)
                     ).save_pretrained(tmp_path / "ckpt")
    params = copy.deepcopy(rc.load_paper("mem2evolve"))
    sec = params["paper"]
    sec["data"]["source"]["load"] = {"path": "json", "data_files": str(tmp_path / "tasks.jsonl")}
    sec["proposer"] = {**sec["proposer"], "pretrained": str(tmp_path / "ckpt"), "dtype": "float32"}
    sec["search"].update(budget_grid=[10, 20], static_target=[0.0, 1.0])
    sec["memory"]["init_tasks"] = 2
    sec["runs"] = {"orders": [0, 1], "seeds": [0]}
    sec["analysis"]["curve_blocks"] = 2
    path = tmp_path / "mem2evolve.yaml"
    path.write_text(yaml.safe_dump(params))
    return tmp_path, path


def test_paper_profile_chain_on_local_task_file_and_checkpoint(paper_setup):
    from repro.papers.mem2evolve import _llm, agent, analysis, calibrate, data

    tmp, path = paper_setup
    r = tmp / "results"
    d = run_stage("mem2evolve", data, path, r / "data", ["data"])
    assert (d["stream"]["tasks"], d["heldout"]["tasks"], d["transfer"]["tasks"]) == (12, 6, 2)
    c = run_stage("mem2evolve", calibrate, path, r / "calibrate", ["search"], [("data", r / "data")])
    assert c["budget"] == 20 and set(c["static_pass_by_budget"]) == {"10", "20"}
    # the LLM proposer: one weight per vocabulary item, mean 1
    params = yaml.safe_load(path.read_text())["paper"]
    llm = _llm.LLMProposer(params["proposer"])
    task = Task("x", "lists", "L", "L", "lists", [[[1, 2], [2, 1]]])
    w = llm(task, PRIMS | {"T0": ("evens", "sort")})
    assert set(w) == set(PRIMS) | {"T0"} and np.mean(list(w.values())) == pytest.approx(1.0)
    inputs = [("calibrate", r / "calibrate")]
    for arm in ARMS:
        for order in (0, 1):
            out = r / "agent" / arm / str(order) / "seed0"
            m = run_stage("mem2evolve", agent, path, out, ["search", "memory", "proposer", "arms"],
                          [("data", r / "data"), ("calibrate", r / "calibrate")],
                          [("arm", arm), ("order", str(order)), ("seed", "0")])
            items = json.loads((out / "items.json").read_text())
            assert m["audit_violations"] == 0 and m["budget"] == 20
            assert [x["phase"] for x in items].count("online") == 10 and len(items) == 20
            inputs.append((f"agent_{arm}_{order}_seed0", out))
    m = run_stage("mem2evolve", analysis, path, r / "analysis", ["search", "memory", "analysis"], inputs)
    assert m["v1"]["full_minus_asset"]["n"] == 2 and m["v1"]["full_minus_asset"]["n_items"] == 12
    assert set(m["arms"]) == set(ARMS)
    assert (r / "analysis" / "online_curves.png").stat().st_size > 1000
    assert "## V1: held-out Pass@1 differences" in (r / "analysis" / "tables.md").read_text()
