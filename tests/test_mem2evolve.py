"""Mem2Evolve: the DSL task generator, the program search, both memories (tool gate, deduplication,
demotion, mining and recruitment in every arm with assets, experience prior), the leak audit with
planted leaks, held-out repeats, Pass@1, the claim decisions (regimes, seed A/A controls, V2's static
control); the paper-profile code path on a local task file and a tiny local checkpoint."""
import collections
import copy
import json
import random

import numpy as np
import pytest
import yaml

from conftest import run_stage

from repro.core import config as rc
from repro.data.programs import CATEGORIES, PRIMITIVES, execute, generate_tasks, redundant, well_typed
from repro.papers.mem2evolve import agent as agent_stage
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
    assert (good.wins, good.fails, good.tries, bad.fails) == (1, 0, 4, 3) and good.wins_in == {"lists": 1}
    assert not bad.active and good.active
    assert mem.recruit("L", "L", "lists", 8) == [good]
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


def solved(agent, program, inputs, tid, category="lists"):
    """Let `agent` learn that `program` solved task `tid` (visible examples from `inputs`)."""
    task = hand_task(program, inputs, tid, category)
    agent.learn(task, Trajectory(tid, category, True, list(program), list(program), 1.0, 3))
    return task


@pytest.mark.parametrize("experience", [False, True])
def test_every_arm_with_assets_mines_recurring_parts_with_tests_from_the_visible_traces(experience):
    # issue 32: mining belongs to the Asset Memory, so asset-only mines as the full arm does (the old
    # code mined only with experience)
    agent = Agent(experience, True, MINI["search"], {**MINI["memory"], "min_support": 2})
    rng = random.Random(0)
    inputs = [[rng.randint(-9, 9) for _ in range(6)] for _ in range(3)]
    solved(agent, ["evens", "sort", "rev"], inputs, "a")
    assert [t.body for t in agent.assets.tools.values()] == [("evens", "sort", "rev")]
    solved(agent, ["evens", "sort", "tail", "cumsum"], inputs, "b")
    tools = {t.body: t for t in agent.assets.tools.values()}
    assert set(tools) == {("evens", "sort", "rev"), ("evens", "sort", "tail", "cumsum"), ("evens", "sort")}
    part = tools[("evens", "sort")]
    assert (part.source, part.span) == ("b", (0, 2))
    # its tests were the visible traces: the value before the part and after it
    assert method.passes(part.body, [[x, execute(["evens", "sort"], x)] for x in inputs])


def test_asset_only_recruits_by_category_as_the_full_arm_does():
    # issue 32: the home-category bonus and the per-category record are asset metadata; the old
    # asset-only arm ranked by global win rate and ignored the category
    mem_p = MINI["memory"]
    rng = random.Random(1)
    inputs = [[rng.randint(-9, 9) for _ in range(6)] for _ in range(3)]
    ranked = {}
    for experience in (False, True):
        agent = Agent(experience, True, MINI["search"], mem_p)
        solved(agent, ["evens", "sort", "rev"], inputs, "x", "list_stats")  # a tool at home in list_stats
        solved(agent, ["uniq", "sort", "tail"], inputs, "y", "lists")  # one at home in lists
        win = [t for t in agent.assets.tools.values() if t.category == "list_stats"][0]
        for _ in range(2):  # the list_stats tool wins twice, but in list_stats only
            agent.assets.record(Trajectory("z", "list_stats", True, [win.name], [], 1.0, 1, {win.name}))
        ranked[experience] = [t.body for t in agent.assets.recruit("L", "L", "lists", 8)]
        assert ranked[experience][0] == ("uniq", "sort", "tail")  # home bonus beats wins elsewhere
        assert [t.body for t in agent.assets.recruit("L", "L", "list_stats", 8)][0] == ("evens", "sort", "rev")
    assert ranked[False] == ranked[True]


def test_heldout_tasks_that_repeat_a_stream_program_are_measured():
    # issue 32: a repeat is the same composition, not the same outputs
    programs = {"stream": [{"task_id": "s0", "program": '["sort"]', "motifs": 1},
                           {"task_id": "s1", "program": '["evens", "sort"]', "motifs": 1}],
                "heldout": [{"task_id": "h0", "program": '["sort"]', "motifs": 1},
                            {"task_id": "h1", "program": '["sort", "evens"]', "motifs": 2},
                            {"task_id": "h2", "program": '["evens", "sort"]', "motifs": 1},
                            {"task_id": "h3", "program": '["rev"]', "motifs": 1}]}
    r = effects.repeats(programs)
    assert (r["share"], r["repeated"], r["single_motif_share"], r["distinct_programs"]) == (0.5, ["h0", "h2"], 0.75, 4)
    # the generator does produce repeats at mini's mix (a quarter or more of the held-out tasks)
    rows = generate_tasks({**SOURCE, "stream_per_category": 20, "heldout_per_category": 10}, 0)
    assert effects.repeats(rows)["share"] > 0.25


def clean_run(source=SOURCE):
    rows = generate_tasks(source, 0)
    tasks = {r["task_id"]: {"split": split, "visible": json.loads(r["visible"]), "hidden": json.loads(r["hidden"]),
                            "program": r["program"]} for split, rs in rows.items() for r in rs}
    agent = Agent(True, True, MINI["search"], MINI["memory"])
    for r in rows["stream"]:
        t = Task(r["task_id"], r["category"], r["in_type"], r["out_type"], r["description"], json.loads(r["visible"]))
        agent.learn(t, agent.solve(t, 100, random.Random(r["task_id"]))[0])
    return rows, tasks, agent


def as_task(r):
    return Task(r["task_id"], r["category"], r["in_type"], r["out_type"], r["description"], json.loads(r["visible"]))


def test_leak_audit_passes_a_clean_run_and_catches_planted_leaks():
    rows, tasks, agent = clean_run()
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
    assert [v for v in method.audit(agent.experience, leaky_assets, tasks) if v.startswith(f"{tid}: ")]


def test_leak_audit_catches_learning_from_heldout_tasks_and_their_target_programs():
    # issue 32: the old audit checked values only, so an agent that learned from the held-out tasks'
    # visible examples (or a tool copied from a held-out target program) passed it
    rows, tasks, agent = clean_run()
    leaky = copy.deepcopy(agent)
    for r in rows["heldout"]:  # the backward pass run on held-out tasks
        t = as_task(r)
        leaky.learn(t, leaky.solve(t, 100, random.Random(r["task_id"]))[0])
    found = method.audit(leaky.experience, leaky.assets, tasks)
    assert any("experience entry: learned from 'heldout-" in v for v in found)
    assert any(v.startswith("logged solution") and "not a stream task" in v for v in found)
    # a held-out target program planted as a tool that claims a stream task as its source
    held = next(r for r in rows["heldout"] if r["depth"] >= 2)
    body = tuple(json.loads(held["program"]))
    planted = copy.deepcopy(agent.assets)
    planted.tools["T999"] = method.Tool("T999", body, *method.types_of(body), held["category"], 0,
                                        rows["stream"][0]["task_id"], (0, len(body)))
    found = method.audit(agent.experience, planted, tasks)
    assert any(v.startswith("tool T999") for v in found)
    planted.tools["T999"].source = held["task_id"]
    assert any("its target program" in v for v in method.audit(agent.experience, planted, tasks))


def test_effect_helpers_on_hand_cases():
    assert effects.slope([0, 0, 1, 1]) == pytest.approx(1.2)
    assert effects.slope([1, 1, 1, 1]) == pytest.approx(0)
    assert effects.curve([1, 0, 1, 1, 0, 0], 3) == [0.5, 1.0, 0.0]
    assert effects.drawdown([0.2, 0.6, 0.3, 0.5, 0.1]) == pytest.approx(0.5)
    assert effects.drawdown([0.1, 0.2, 0.3]) == 0.0
    assert agent_stage.snapshot_points(300, 4) == [0, 100, 200, 300]


ARMS = ("static", "experience", "asset", "full")
CALIBRATION = {"budget": 100, "static_pass": 0.45, "static_pass_by_budget": {"100": 0.45}, "target": [0.3, 0.5],
               "by_category": {}, "by_depth": {}, "deeper_than_search": 0.2}
ANALYSIS_P = {"analysis": {"curve_blocks": 10, "drawdown_blocks": 5}, "runs": {"heldout_snapshots": 2}}


def simulated(heldout: dict[str, float], growth: dict[str, float], wobble: dict[str, float] | None = None,
              seeds=range(5), orders: int = 3, tasks: int = 120, online: int = 150, drift: float = 0.0,
              tools_online: int = 3, leak: int = 0, seed: int = 0, flat: bool = False) -> tuple[dict, list, dict]:
    """Runs of every arm on `seeds` and the static arm on A/A seeds. Within one (seed, order) the arms
    share the draws of task difficulty; an arm passes a held-out task when its draw is below the arm's
    rate; online Pass@1 rises by `growth` (and by `drift` for every arm: a stream that gets easier)
    and oscillates with amplitude `wobble`. `flat`: palindromic online draws, so a flat arm's slope is
    exactly 0. Returns (runs, aa runs, programs)."""
    rng, wobble = np.random.default_rng(seed), wobble or {}
    ids = [f"h{i}" for i in range(tasks)]
    programs = {"stream": [{"task_id": f"s{i}", "program": json.dumps([f"p{i % 40}"]), "motifs": 1} for i in range(80)],
                "heldout": [{"task_id": t, "program": json.dumps([f"p{i % 60}"]), "motifs": 1 + i % 2}
                            for i, t in enumerate(ids)]}

    def one(arm, s, draws):
        items, per_order = [], []
        for o, (u_held, u_on, phase) in enumerate(draws):
            p_on = (0.4 + (growth.get(arm, 0.0) + drift) * np.linspace(0, 1, online)
                    + wobble.get(arm, 0.0) * np.sin(np.arange(online) / 4.0 + phase))
            base = {"order": o, "category": "lists", "solved_visible": True, "demoted": [], "active_tools": 0,
                    "tools_from_other_category": 0}
            items += [{**base, "phase": "online", "position": i, "task_id": f"o{i}", "passed": bool(u_on[i] < p_on[i]),
                       "kept": ["T"] * (tools_online if arm in ("asset", "full") and i == 0 else 0), "tools_used": []}
                      for i in range(online)]
            items += [{**base, "phase": "heldout", "position": i, "task_id": t, "passed": bool(u_held[i] < heldout[arm]),
                       "kept": [], "tools_used": ["T0"] if arm in ("asset", "full") and i % 3 == 0 else []}
                      for i, t in enumerate(ids)]
            items += [{**base, "phase": "transfer", "position": 0, "task_id": "x0", "passed": True, "kept": [],
                       "tools_used": []}]
            per_order.append({"order": o, "tools_created": tools_online, "tools_active": tools_online, "proposals": {},
                              "heldout_targets_in_memory": 0, "heldout_pass": 0.0})
        return {"arm": arm, "seed": s, "items": items, "orders": per_order, "audit_violations": leak,
                "audit_examples": ["planted"] * leak}

    def draws():
        out = []
        for _ in range(orders):
            u_on = rng.random(online)
            if flat:
                u_on = np.concatenate([u_on[:online // 2], u_on[:online // 2][::-1]])
            out.append((rng.random(tasks), u_on, rng.random() * 6))
        return out

    runs = {a: [] for a in ARMS}
    for s in seeds:
        d = draws()
        for a in ARMS:
            runs[a].append(one(a, s, d))
    aa = [one("static", 100 + s, draws()) for s in seeds]
    return runs, aa, programs


def decided(runs, aa, programs, claims=None):
    m = effects.decide(runs, aa, CALIBRATION, programs, ANALYSIS_P)
    out = {}
    for v in evaluate_claims(claims or rc.load_paper("mem2evolve")["claims"], m):
        out[v["id"]] = v
        out.update({c["metric"]: c["verdict"] for c in v["checks"]})
    return m, out


def test_effects_are_paired_by_seed_with_orders_nested():
    runs, aa, programs = simulated({a: 0.45 for a in ARMS}, {}, seeds=range(4), orders=3)
    m, _ = decided(runs, aa, programs)
    e = m["v1"]["full_minus_asset"]
    # seeds are the unit (the old analysis counted orders x seeds as independent runs)
    assert e["n"] == 4 and e["n_items"] == 120 and e["n_clusters"] == 60 and m["v2"]["slope_full_minus_static"]["n"] == 4
    assert m["repeats"]["share"] == pytest.approx(80 / 120) and m["v1_novel"]["full_minus_asset"]["n_items"] == 40


def test_null_effects_are_not_reproduced():
    # identical arms on identical draws and flat online curves (slopes 0 up to rounding)
    m, v = decided(*simulated({a: 0.45 for a in ARMS}, {}, flat=True))
    checks = {k: x for k, x in v.items() if "." in k}
    assert all(x in (NOT_REPRODUCED, INCONCLUSIVE) for x in checks.values()), checks
    assert v["V1"]["regime"] == v["V2"]["regime"] == "met"
    # zero-width intervals on 0, which "> 0" and "< 0" reject
    assert v["v1.full_minus_asset"] == v["v2.drawdown_full_minus_asset"] == NOT_REPRODUCED
    # the order reversed, and a falling full arm that oscillates more than asset-only
    _, v = decided(*simulated({"static": 0.6, "experience": 0.5, "asset": 0.4, "full": 0.3}, {"full": -0.3},
                              {"full": 0.3}))
    assert all(v[k] == NOT_REPRODUCED for k in ("v1.full_minus_asset", "v1.asset_minus_experience",
                                                 "v1.experience_minus_static", "v2.slope_full_minus_static",
                                                 "v2.drawdown_full_minus_asset")), v


def test_clear_effects_are_reproduced():
    m, v = decided(*simulated({"static": 0.3, "experience": 0.45, "asset": 0.6, "full": 0.75}, {"full": 0.4},
                              {"asset": 0.3}))
    assert v["V1"]["verdict"] == v["V2"]["verdict"] == REPRODUCED, (v["V1"]["reason"], v["V2"]["reason"])
    assert m["controls"]["seed_aa"]["passed"] and m["controls"]["seed_aa_slope"]["passed"]


def test_v2_slope_is_taken_against_the_static_arm():
    # issue 32: a stream that gets easier lifts every arm's slope; the old check (the full arm's slope
    # > 0) called that growth, the static arm's slope removes it
    m, v = decided(*simulated({"static": 0.3, "experience": 0.45, "asset": 0.6, "full": 0.75}, {}, {"asset": 0.3},
                              drift=0.4))
    assert m["v2"]["full_slope"]["ci"][0] > 0 and m["v2"]["static_slope"]["ci"][0] > 0
    assert v["v2.slope_full_minus_static"] != REPRODUCED


def test_failed_regimes_make_claims_inconclusive_whatever_the_checks_say():
    clear = ({"static": 0.3, "experience": 0.45, "asset": 0.6, "full": 0.75}, {"full": 0.4}, {"asset": 0.3})
    # V1: the static arm solves nearly everything (no room for the paper's gain)
    _, v = decided(*simulated({"static": 0.9, "experience": 0.93, "asset": 0.96, "full": 0.99}, *clear[1:]))
    assert v["V1"]["regime"] == "not reached" and v["V1"]["verdict"] == INCONCLUSIVE
    assert v["V1"]["checks_verdict"] == REPRODUCED
    # V2: the online stream never changes the memory (no tool added)
    _, v = decided(*simulated(*clear, tools_online=0))
    assert v["V2"]["regime"] == "not reached" and v["V2"]["verdict"] == INCONCLUSIVE
    assert v["V2"]["checks_verdict"] == REPRODUCED


def test_a_leak_found_by_the_audit_fails_every_claims_regime():
    # issue 32: the audit's count reaches the metrics (the old job wrote a constant 0)
    m, v = decided(*simulated({"static": 0.3, "experience": 0.45, "asset": 0.6, "full": 0.75}, {"full": 0.4},
                              {"asset": 0.3}, leak=2))
    assert m["audit"] == {"clean": False, "violations": 2 * 25, "examples": ["planted"] * 20}
    assert all(v[c]["verdict"] == INCONCLUSIVE and "leak audit" in v[c]["reason"] for c in ("V1", "V2"))


def test_a_failed_seed_aa_control_makes_the_claims_inconclusive():
    runs, aa, programs = simulated({"static": 0.3, "experience": 0.45, "asset": 0.6, "full": 0.75}, {"full": 0.4},
                                   {"asset": 0.3})
    for r in aa:  # A/A seeds that solve more: a broken seed control
        for x in r["items"]:
            if x["phase"] == "heldout":
                x["passed"] = x["passed"] or x["task_id"] in {f"h{i}" for i in range(0, 120, 2)}
    m, v = decided(runs, aa, programs)
    assert not m["controls"]["seed_aa"]["passed"] and v["V1"]["verdict"] == INCONCLUSIVE
    assert "seed_aa" in v["V1"]["reason"] and v["V2"]["verdict"] == REPRODUCED


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
    sec["runs"] = {"seeds": [0, 1], "aa_seeds": [100, 101], "orders": 2, "heldout_snapshots": 3}
    sec["analysis"].update(curve_blocks=2, drawdown_blocks=2)
    path = tmp_path / "mem2evolve.yaml"
    path.write_text(yaml.safe_dump(params))
    return tmp_path, path


def test_paper_profile_chain_on_local_task_file_and_checkpoint(paper_setup):
    from repro.papers.mem2evolve import _llm, analysis, calibrate, data

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
    inputs = [("data", r / "data"), ("calibrate", r / "calibrate")]
    jobs = [(arm, seed) for arm in ARMS for seed in (0, 1)] + [("static", 100), ("static", 101)]
    for arm, seed in jobs:
        out = r / "agent" / arm / f"seed{seed}"
        m = run_stage("mem2evolve", agent_stage, path, out, ["search", "memory", "proposer", "arms", "runs"],
                      [("data", r / "data"), ("calibrate", r / "calibrate")], [("arm", arm), ("seed", str(seed))])
        items = json.loads((out / "items.json").read_text())
        assert m["audit_violations"] == 0 and m["budget"] == 20 and len(m["orders"]) == 2
        phases = collections.Counter((x["order"], x["phase"]) for x in items)
        assert phases[0, "online"] == phases[1, "online"] == 10 and phases[1, "heldout"] == 6
        # frozen snapshots of the memories solve the held-out set during the stream (memoryless: once)
        assert phases[0, "snapshot1"] == (0 if arm == "static" else 6)
        inputs.append((f"agent_{arm}_seed{seed}", out))
    # determinism: the same params and seed give the same records
    again = r / "again"
    run_stage("mem2evolve", agent_stage, path, again, ["search", "memory", "proposer", "arms", "runs"],
              [("data", r / "data"), ("calibrate", r / "calibrate")], [("arm", "full"), ("seed", "1")])
    assert (again / "items.json").read_text() == (r / "agent" / "full" / "seed1" / "items.json").read_text()
    m = run_stage("mem2evolve", analysis, path, r / "analysis", ["search", "memory", "runs", "analysis"], inputs)
    assert m["v1"]["full_minus_asset"]["n"] == 2 and m["v1"]["full_minus_asset"]["n_items"] == 6
    assert set(m["arms"]) == set(ARMS) and m["aa_seeds"] == [100, 101] and m["audit"]["clean"]
    assert m["controls"]["seed_aa"]["kind"] == "seed A/A"
    assert (r / "analysis" / "online_curves.png").stat().st_size > 1000
    assert (r / "analysis" / "heldout_curves.png").stat().st_size > 1000
    assert "## V1: held-out Pass@1 differences" in (r / "analysis" / "tables.md").read_text()
