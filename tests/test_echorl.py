"""EchoRL: task generator and verifier, step splitting and entropies, EchoClip selection, the
auxiliary loss's tokens, claim decisions; the paper-profile code path on local files."""
import copy
import json
import random

import datasets
import numpy as np
import pytest
import torch
import yaml

from conftest import run_stage

from repro.core import config as rc
from repro.data.arithmetic import (CharTokenizer, extract_answer, generate_task, in_kind, sample_split, solve,
                                   step_has_carry, verify)
from repro.papers.echorl import analysis, effects, method
from repro.rl.grpo import group_stats
from repro.report.verdicts import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED, evaluate_claims
from repro.rl.rollout import Rollouts

TOK = CharTokenizer()
DELIM = method.delimiter_mask(TOK)


def test_solution_format_and_verifier():
    text, total = solve([47, 85, 19, 63])
    assert text == "47+85=132\n132+19=151\n151+63=214\n#214" and total == 214
    assert verify(text, "214", r"#(\d+)") == 1.0
    assert verify("47+85=132\n#213", "214", r"#(\d+)") == 0.0
    assert verify("47+85=132\n132+19=151", "214", r"#(\d+)") == 0.0  # no final answer
    assert extract_answer("#12\n#214", r"#(\d+)") == "214"  # the last one counts
    assert extract_answer(r"so \boxed{42}.", r"\\boxed\{([^{}]*)\}") == "42"


def test_generated_splits_are_in_range_and_reproducible():
    kinds = [{"operands": [6, 7], "digits": [2, 3]}, {"operands": [3, 5], "digits": [4, 4]}]
    a, b = sample_split(20, kinds, seed=3), sample_split(20, kinds, seed=3)
    assert a == b
    for i, p in enumerate(a["prompt"]):
        xs = p.rstrip("=").split("+")
        if i % 2 == 0:
            assert 6 <= len(xs) <= 7 and all(2 <= len(x) <= 3 for x in xs)
        else:
            assert 3 <= len(xs) <= 5 and all(len(x) == 4 for x in xs)
        assert sum(map(int, xs)) == int(a["answer"][i])
    held = sample_split(20, kinds, seed=4, exclude=set(a["prompt"]))
    assert not set(held["prompt"]) & set(a["prompt"])


def test_ood_kinds_are_held_out_of_every_id_split():
    assert in_kind("47+85+19=", {"operands": [3, 4], "digits": [2, 2]})
    assert not in_kind("47+8+19=", {"operands": [3, 4], "digits": [2, 2]})
    assert not in_kind("47+85=", {"operands": [3, 4], "digits": [2, 2]})
    # mini's split: the OOD kind (every operand two-digit) lies inside the ID ranges
    src = {"id": {"operands": [3, 4], "digits": [1, 2]}, "ood": [{"operands": [3, 4], "digits": [2, 2]}],
           "sft_examples": 300, "train_prompts": 200, "test_prompts": 100}
    task = generate_task(src, seed=0)
    for split in ("sft", "train", "id_test"):
        assert not any(in_kind(p, src["ood"][0]) for p in task[split]["prompt"]), split
        assert all(in_kind(p, src["id"]) for p in task[split]["prompt"])
    assert all(in_kind(p, src["ood"][0]) for p in task["ood_test"]["prompt"])
    assert not set(task["ood_test"]["prompt"]) & (set(task["sft"]["prompt"]) | set(task["train"]["prompt"]))
    # without the held-out kind, about 1 in 4 to 1 in 8 ID problems would have been all two-digit
    assert sum(in_kind(p, src["ood"][0]) for p in sample_split(300, [src["id"]], seed=1)["prompt"]) > 20
    # an OOD kind disjoint from ID skips nothing: the ID splits are the draws without it
    disjoint = generate_task({**src, "ood": [{"operands": [6, 7], "digits": [1, 2]}]}, seed=0)
    assert disjoint["sft"]["prompt"] == sample_split(300, [src["id"]], seed=1)["prompt"]


def test_char_tokenizer_round_trip_and_one_token_delimiter():
    ids = TOK.encode("12+3=15\n#15")
    assert TOK.decode(ids + [TOK.eos_token_id]) == "12+3=15\n#15"
    assert DELIM.sum() == 1 and DELIM[TOK.encode("\n")[0]]


def test_carry_detection():
    assert step_has_carry("47+85=132\n") and step_has_carry("15+5=20")
    assert step_has_carry("12+34=46\n") is False and step_has_carry("#214") is None


def constructed_rollouts():
    """Group 0: two correct responses with known per-token entropies; group 1: mixed rewards."""
    r0 = "1+2=3\n3+40=43\n#43"
    r1 = "1+2=3\n3+40=43\n#43"
    rows = [TOK.encode(t) + [TOK.eos_token_id] for t in (r0, r1, r0, "#9")]
    width = max(map(len, rows))
    resp = torch.zeros(4, width, dtype=torch.long)
    mask = torch.zeros(4, width, dtype=torch.bool)
    for i, r in enumerate(rows):
        resp[i, :len(r)], mask[i, :len(r)] = torch.tensor(r), True
    ent = torch.zeros(4, width)
    # rollout 0: steps "1+2=3\n" (6 tokens, 0.1), "3+40=43\n" (8 tokens, 0.5), "#43<eos>" (4 tokens, 0.2)
    ent[0, :6], ent[0, 6:14], ent[0, 14:18] = 0.1, 0.5, 0.2
    # rollout 1: its peak (0.9) is in the first step: it gives the clip under rollout_choice=peak
    ent[1, :6], ent[1, 6:14], ent[1, 14:18] = 0.9, 0.3, 0.05
    prompt = torch.full((4, 2), 3)
    return Rollouts(sequences=torch.cat([prompt, resp], 1),
                    attention_mask=torch.cat([torch.ones(4, 2, dtype=torch.long), mask.long()], 1),
                    prompt_width=2, response_mask=mask, logprobs=torch.zeros(4, width), entropies=ent,
                    group_ids=torch.tensor([0, 0, 1, 1]))


def test_step_split_and_step_entropy():
    ro = constructed_rollouts()
    spans = method.step_spans(ro.responses[0], int(ro.response_mask[0].sum()), DELIM)
    assert spans == [(0, 6), (6, 14), (14, 18)]
    assert [TOK.decode(ro.responses[0, a:b].tolist()) for a, b in spans] == ["1+2=3\n", "3+40=43\n", "#43"]
    assert method.step_entropies(ro.entropies[0], spans) == pytest.approx([0.1, 0.5, 0.2])
    ent = torch.tensor([0.0, 1.0, 3.0, 0.0, 0.0, 0.0])  # one step of 3 tokens, unfinished second
    spans = method.step_spans(torch.tensor(TOK.encode("1\n2345")), 6, DELIM)  # unfinished last step
    assert spans == [(0, 2), (2, 6)] and method.step_entropies(ent, spans) == pytest.approx([0.5, 0.75])


def test_clip_ends_at_the_chosen_step_and_aux_loss_covers_exactly_the_clip():
    ro = constructed_rollouts()
    rewards = torch.tensor([1.0, 1.0, 1.0, 0.0])
    success = group_stats(rewards, ro.group_ids).all_equal_to(1.0)
    assert success.tolist() == [True, False]
    rng = random.Random(0)
    mask, rec = method.echo_clips(ro, rewards, success, DELIM, how="max_entropy", rollout_choice="all", rng=rng)
    assert [(r["rollout"], r["end_step"]) for r in rec] == [(0, 1), (1, 0)]
    assert mask[0].nonzero().flatten().tolist() == list(range(14))  # up to the end of "3+40=43\n"
    assert mask[1].nonzero().flatten().tolist() == list(range(6))
    assert not mask[2:].any()  # the mixed group gets no clip
    mask, rec = method.echo_clips(ro, rewards, success, DELIM, how="max_entropy", rollout_choice="peak", rng=rng)
    assert [r["rollout"] for r in rec] == [1] and mask[1].sum() == 6 and not mask[0].any()
    mask, _ = method.echo_clips(ro, rewards, success, DELIM, how="min_entropy", rollout_choice="peak", rng=rng)
    assert mask[1].sum() == 18  # lowest step entropy of rollout 1 is its last step: whole response
    mask, _ = method.echo_clips(ro, rewards, success, DELIM, how="whole_response", rollout_choice="all", rng=rng)
    assert torch.equal(mask[:2], ro.response_mask[:2])
    ends = {method.echo_clips(ro, rewards, success, DELIM, how="random_step", rollout_choice="peak",
                              rng=random.Random(s))[1][0]["end_step"] for s in range(30)}
    assert ends == {0, 1, 2}
    # the auxiliary NLL reads exactly the clip tokens
    logp = torch.randn(4, ro.responses.shape[1], requires_grad=True)
    clip_mask, _ = method.echo_clips(ro, rewards, success, DELIM, how="max_entropy", rollout_choice="all", rng=rng)
    method.clip_nll(logp, clip_mask).backward()
    assert torch.equal(logp.grad != 0, clip_mask)
    assert torch.allclose(logp.grad[clip_mask], torch.full((20,), -1 / 20))


AA = [100, 101, 102, 103, 104]
SEEDS = {"grpo": [*range(6), *AA], "echo": range(6), "random_step": range(5), "min_entropy": range(5),
         "whole_sft": range(3)}
ARMS = {"grpo": {"clip": "none", "aa_seeds": AA},
        "echo": {"clip": "max_entropy", "beta": 0.1, "rollout_choice": "peak"},
        **{a: {"clip": a, "beta": 0.1, "rollout_choice": "peak"} for a in ("random_step", "min_entropy")},
        "whole_sft": {"clip": "whole_response", "beta": 0.1, "rollout_choice": "peak"}}
PROMPTS = 300


def sft_record(id_rate=0.5, ood_rate=0.2, seed=99):
    rng = np.random.default_rng(seed)
    correct = {split: [float(x) for x in rng.random(PROMPTS) < p] for split, p in (("id", id_rate), ("ood", ood_rate))}
    return {"id_accuracy": id_rate, "ood_accuracy": ood_rate, "steps": 450, "correct": correct, "entropy_profile": {
        "carry_steps": 0.5, "no_carry_steps": 0.1, "peak_at_carry_fraction": 0.9, "carry_base_rate": 0.5}}


def run_record(arm, seed, id_items, ood_items, first=0.1, last=0.2, clip_share=0.3, **extra):
    return {"arm": arm, "seed": seed, "evaluated_on": "test", "id_accuracy": float(np.mean(id_items)),
            "ood_accuracy": float(np.mean(ood_items)), "seconds_per_step": 1.0, "all_success_first_quarter": first,
            "all_success_last_quarter": last, "pg_norm_first_quarter": 1.0, "pg_norm_last_quarter": 0.5,
            "clips_per_step": 8 * clip_share, "clip_share": clip_share, "steps_with_clip": 1.0,
            "correct": {"id": [float(x) for x in id_items], "ood": [float(x) for x in ood_items]}, **extra}


def simulated_runs(gain: dict[str, float], rise: float, first: float = 0.1, clip_share: dict | None = None,
                   seed: int = 0) -> dict:
    """Every arm of a seed starts from the same per-prompt GRPO results (the A/A seed 100 + i shares
    seed i's); an arm redraws 20% of its prompts at GRPO's rate (what another RL run changes) and then
    turns a share `gain` of its wrong prompts right (negative: right prompts wrong; a dict for one
    split). E1's rise = last - first quarter, with seed noise; `clip_share` per arm (default 0.3)."""
    rng = np.random.default_rng(seed)
    runs = {}
    for s in range(6):
        base = {split: rng.random(PROMPTS) < p for split, p in (("id", 0.6), ("ood", 0.3))}
        for arm, seeds in SEEDS.items():
            for run_seed in [x for x in seeds if x % 100 == s]:
                out = {}
                for split, b in base.items():
                    x = b.copy()
                    if arm != "grpo" or run_seed in AA:
                        key = "grpo_aa" if run_seed in AA else arm
                        redo = rng.random(PROMPTS) < 0.2
                        x[redo] = rng.random(int(redo.sum())) < b.mean()
                        g = gain.get(key, 0.0)
                        g = g.get(split, 0.0) if isinstance(g, dict) else g
                        flip = (~x if g > 0 else x) & (rng.random(PROMPTS) < abs(g))
                        x = x ^ flip
                    out[split] = x
                runs.setdefault(arm, []).append(run_record(
                    arm, run_seed, out["id"], out["ood"], first=first, last=first + rise + rng.normal(0, 0.05),
                    clip_share=(clip_share or {}).get(arm, 0.3) + rng.normal(0, 0.01)))
    return runs


def verdicts(runs, sft=None):
    """Claim id -> its evaluation, and metric -> check verdict, through the params' claims."""
    m = effects.decide(runs, sft or sft_record(), ARMS)
    claims = evaluate_claims(rc.load_paper("echorl")["claims"], m)
    return {c["id"]: c for c in claims}, {k["metric"]: k["verdict"] for c in claims for k in c["checks"]}


def test_effects_pair_arms_by_seed_and_prompt_one_split_at_a_time():
    # seed s: grpo right on prompts 0..4 of 10 (ID) and 0 of 10 (OOD); echo on 0..(5+s) ID, 0..1 OOD
    ids = lambda k: [1.0] * k + [0.0] * (10 - k)  # noqa: E731
    runs = {"grpo": [run_record("grpo", s, ids(5), ids(1), first=0.1, last=0.1 + 0.1 * s) for s in range(3)],
            "echo": [run_record("echo", s, ids(5 + s), ids(2)) for s in range(3)],
            "random_step": [run_record("random_step", s, ids(5), ids(1)) for s in (0, 2)]}
    sft = {**sft_record(), "correct": {"id": ids(4), "ood": ids(1)}}
    m = effects.decide(runs, sft, ARMS)
    assert m["e1"]["increase"]["value"] == pytest.approx(0.1) and m["e1"]["increase"]["n"] == 3
    assert m["e1"]["increase"]["method"] == "Student-t"
    e = m["e2"]["id"]
    assert e["value"] == pytest.approx(0.1) and e["seeds"] == [0, 1, 2] and e["unit"] == "seeds x items"
    assert e["samples"] == pytest.approx([0.0, 0.1, 0.2]) and e["n_items"] == 10
    assert e["ci"][0] <= e["ci_items"][0] <= e["value"] <= e["ci_items"][1] <= e["ci"][1]
    # runs of echo (0.5, 0.6, 0.7) against grpo's (0.5 x 3): 6 of 9 pairs above, 3 ties at half
    assert e["p_improvement"] == pytest.approx(7.5 / 9)
    # OOD: the same difference on every seed, yet one prompt of ten carries it: the prompts' noise counts
    e = m["e2"]["ood"]
    assert e["samples"] == pytest.approx([0.1] * 3) and e["ci"][0] < 0.1 < e["ci"][1]
    # E3 pairs on the seeds the ablation ran, one effect per split over that split's prompts only
    # (issue 32: the old code pooled ID and OOD as 20 items of one sample)
    vs = m["e3"]["vs_random"]
    assert vs["id"]["seeds"] == [0, 2] and vs["id"]["n_items"] == vs["ood"]["n_items"] == 10
    assert vs["id"]["value"] == pytest.approx(0.1) and vs["ood"]["value"] == pytest.approx(0.1)
    assert "vs_min_entropy" not in m["e3"]
    # regimes: GRPO (5 of 10) over SFT (4 of 10) on ID; the SFT model's OOD share over its prompts
    assert m["regime"]["grpo_over_sft"]["value"] == pytest.approx(0.1)
    assert m["regime"]["ood_baseline"]["value"] == pytest.approx(0.1) and m["regime"]["ood_baseline"]["unit"] == "items"
    assert m["regime"]["clip_share_every_arm"]["points"] == 2  # echo and random_step ran here
    assert m["controls"] == {}  # no A/A seeds ran
    tables = analysis.report_tables(m, ARMS, rc.load_paper("echorl")["mini"])
    assert tables.startswith("## Design (amended for issues 16 and 32)")
    assert "OOD: 3-4 operands of 2-2 digits, a combination held out" in tables and "SFT init solves 20.0%" in tables
    assert "0.300 of each step's groups gave a clip" in tables and "the same 10 ID and 10 OOD prompts" in tables
    assert "| echo - grpo, ID (E2) | +10.0 |" in tables and "| 0.83 | 0, 1, 2 |" in tables
    assert "| echo - random_step, OOD (E3) | +10.0 |" in tables
    assert "No validation sweep in this profile" in tables


def test_seed_aa_control_pairs_disjoint_seeds_positionally_through_the_claims_effect_code():
    runs = simulated_runs(gain={"echo": 0.3}, rise=0.2)
    m = effects.decide(runs, sft_record(), ARMS)
    for split in ("id", "ood"):
        c = m["controls"][f"seed_aa_{split}"]
        assert c["kind"] == "seed A/A" and c["passed"]
        assert c["effect"]["seeds"] == [0, 1, 2, 3, 4] and c["effect"]["aa_seeds"] == AA
        assert c["effect"]["unit"] == "seeds x items" and c["effect"]["n_items"] == PROMPTS
    # the A/A runs never count as GRPO seeds of a claim
    assert m["arms"]["grpo"]["seeds"] == list(range(6)) and m["e1"]["increase"]["n"] == 6
    assert m["aa_arm"]["seeds"] == [0, 1, 2, 3, 4]  # relabelled onto the seeds they pair with
    # an A/A set that differs from GRPO as much as EchoClip does fails, and E2/E3 become inconclusive
    claims, checks = verdicts(simulated_runs(gain={"echo": 0.3, "grpo_aa": 0.3}, rise=0.2))
    assert checks["e2.id"] == REPRODUCED and claims["E2"]["verdict"] == INCONCLUSIVE
    assert "control failed: seed_aa_id" in claims["E2"]["reason"] and claims["E3"]["verdict"] == INCONCLUSIVE
    assert claims["E1"]["verdict"] == REPRODUCED  # E1 compares no trained arms


def test_null_effects_are_not_reproduced():
    claims, checks = verdicts(simulated_runs(gain={}, rise=0.0))
    assert all(x in (NOT_REPRODUCED, INCONCLUSIVE) for x in checks.values()), checks
    assert all(c["regime"] == "met" for c in claims.values())
    assert all(c["verdict"] != REPRODUCED for c in claims.values())
    # an arm identical to GRPO on every prompt: a zero-width interval on 0, which "> 0" rejects
    runs = simulated_runs(gain={}, rise=0.0)
    runs["echo"] = [{**r, "arm": "echo"} for r in runs["grpo"] if r["seed"] not in AA]
    assert verdicts(runs)[1]["e2.id"] == NOT_REPRODUCED
    # the max-entropy clip clearly worse than the ablations: ">= 0" not reproduced (Holm over 4 checks)
    claims, checks = verdicts(simulated_runs(gain={"random_step": 0.3, "min_entropy": 0.3}, rise=-0.2))
    assert checks["e1.increase"] == NOT_REPRODUCED and claims["E1"]["verdict"] == NOT_REPRODUCED
    assert all(checks[f"e3.{k}.{s}"] == NOT_REPRODUCED for k in ("vs_random", "vs_min_entropy") for s in ("id", "ood"))
    assert claims["E3"]["verdict"] == NOT_REPRODUCED


def test_clear_effects_are_reproduced():
    claims, checks = verdicts(simulated_runs(gain={"echo": 0.3}, rise=0.2))
    assert set(checks) == {"e1.increase", "e2.id", "e2.ood", "e3.vs_random.id", "e3.vs_random.ood",
                           "e3.vs_min_entropy.id", "e3.vs_min_entropy.ood"}
    assert all(x == REPRODUCED for x in checks.values()), checks
    assert all(c["regime"] == "met" and c["verdict"] == REPRODUCED for c in claims.values())


def test_a_failed_regime_is_inconclusive_whatever_the_checks_say():
    clear = dict(gain={"echo": 0.3}, rise=0.2)
    # E1: no degenerate group when GRPO starts
    claims, checks = verdicts(simulated_runs(**clear, first=0.0))
    assert checks["e1.increase"] == REPRODUCED and claims["E1"]["regime"] == "not reached"
    assert claims["E1"]["verdict"] == INCONCLUSIVE and claims["E1"]["reason"].startswith("regime not reached")
    # E1: GRPO below its SFT start (an SFT model that already solves everything)
    claims, _ = verdicts(simulated_runs(**clear), sft=sft_record(id_rate=1.0))
    assert claims["E1"]["verdict"] == INCONCLUSIVE and "training proceeds" in claims["E1"]["reason"]
    # E2 and E3: EchoClip acts on 1 group in 10, as in the first design (issue 31); the old params had no
    # regime and called this reproduced
    claims, checks = verdicts(simulated_runs(**clear, clip_share={a: 0.1 for a in SEEDS}))
    assert checks["e2.id"] == checks["e3.vs_min_entropy.ood"] == REPRODUCED
    assert claims["E2"]["verdict"] == claims["E3"]["verdict"] == INCONCLUSIVE
    assert claims["E2"]["regime"] == claims["E3"]["regime"] == "not reached" and claims["E1"]["verdict"] == REPRODUCED
    # E3 only: one compared ablation arm hardly clips (min over the arms)
    claims, _ = verdicts(simulated_runs(**clear, clip_share={"min_entropy": 0.1}))
    assert claims["E3"]["verdict"] == INCONCLUSIVE and claims["E2"]["verdict"] == REPRODUCED
    # E2: the OOD split at the floor for the SFT model
    claims, _ = verdicts(simulated_runs(**clear), sft=sft_record(ood_rate=0.02))
    assert claims["E2"]["verdict"] == INCONCLUSIVE and claims["E3"]["verdict"] == REPRODUCED


def test_validation_arms_choose_beta_and_never_reach_a_claim():
    runs = simulated_runs(gain={}, rise=0.2)
    arms = {**ARMS, "grpo_val": {"clip": "none", "evaluate_on": "validation", "seeds": [200, 201]}}
    rng = np.random.default_rng(5)
    for beta, rate in ((0.01, 0.5), (0.1, 0.7), (1.0, 0.4)):
        name = f"echo_val_{str(beta).replace('.', '')}"
        arms[name] = {"clip": "max_entropy", "beta": beta, "rollout_choice": "peak", "evaluate_on": "validation",
                      "seeds": [200, 201]}
        runs[name] = [run_record(name, s, rng.random(50) < rate, rng.random(50) < rate / 2, evaluated_on="validation")
                      for s in (200, 201)]
    runs["grpo_val"] = [run_record("grpo_val", s, rng.random(50) < 0.5, rng.random(50) < 0.25,
                                   evaluated_on="validation") for s in (200, 201)]
    m = effects.decide(runs, sft_record(), arms)
    assert m["sweep"]["chosen_beta"] == 0.1 and [r["beta"] for r in m["sweep"]["rows"]] == [0.01, 0.1, 1.0]
    assert all(r["base"] == "grpo_val" and r["id"]["n_items"] == 50 for r in m["sweep"]["rows"])
    # the claims read the test arms only: the same effects as without the sweep
    plain = effects.decide({a: rs for a, rs in runs.items() if a in ARMS}, sft_record(), ARMS)
    assert m["e2"] == plain["e2"] and m["e3"] == plain["e3"] and set(m["arms"]) == set(ARMS)
    assert "Chosen by the rule: beta = 0.1" in analysis.report_tables(m, arms, rc.load_paper("echorl")["mini"])


def test_validation_splits_are_disjoint_from_training_and_test_and_leave_them_unchanged():
    src = {"id": {"operands": [3, 4], "digits": [1, 2]}, "ood": [{"operands": [3, 4], "digits": [2, 2]}],
           "sft_examples": 300, "train_prompts": 200, "test_prompts": 100}
    old = generate_task(src, seed=0)
    task = generate_task({**src, "val_prompts": 80}, seed=0)
    assert set(old) == {"sft", "train", "id_test", "ood_test"}
    assert set(task) == set(old) | {"id_val", "ood_val"}
    for name in old:
        assert task[name]["prompt"] == old[name]["prompt"]
    val = set(task["id_val"]["prompt"]) | set(task["ood_val"]["prompt"])
    assert len(val) == 160
    assert not val & set().union(*(set(task[n]["prompt"]) for n in old))
    assert all(in_kind(p, src["ood"][0]) for p in task["ood_val"]["prompt"])
    assert not any(in_kind(p, src["ood"][0]) for p in task["id_val"]["prompt"])


@pytest.fixture
def paper_setup(tmp_path):
    """The `paper` section with hub names swapped for a local BPE tokenizer, a tiny Qwen2 checkpoint
    saved with save_pretrained, and local JSON files read through datasets.load_dataset."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from conftest import save_bpe_tokenizer

    rng = random.Random(0)
    files = {}
    for split in ("train", "math", "mmlu", "math_val", "mmlu_val"):
        rows = []
        for _ in range(12):
            a, b = rng.randint(1, 99), rng.randint(1, 99)
            rows.append({"problem": f"What is {a}+{b}?\nPut the answer in \\boxed{{}}.", "answer": str(a + b)})
        files[split] = tmp_path / f"{split}.jsonl"
        files[split].write_text("\n".join(json.dumps(r) for r in rows))
    text = [json.loads(line)["problem"] + " \\boxed{42}\n" for line in files["train"].read_text().splitlines()]
    vocab = save_bpe_tokenizer(text, tmp_path / "tok", eos_token="<eos>")
    torch.manual_seed(0)
    Qwen2ForCausalLM(Qwen2Config(vocab_size=vocab, hidden_size=32, num_hidden_layers=2,
                                 num_attention_heads=4, num_key_value_heads=2, intermediate_size=64,
                                 max_position_embeddings=256)).save_pretrained(tmp_path / "ckpt")

    params = copy.deepcopy(rc.load_paper("echorl"))
    sec = params["paper"]
    for name, f in (("train", "train"), ("id_test", "math"), ("ood_test", "mmlu"), ("id_val", "math_val"),
                    ("ood_val", "mmlu_val")):
        sec["data"]["source"]["splits"][name] = {"load": {"path": "json", "data_files": str(files[f])},
                                                 "split": "train", "columns": {"prompt": "problem", "answer": "answer"}}
    # a validation-sweep arm (issue 32): it must score the validation prompts only
    sec["arms"]["echo_val"] = {"clip": "max_entropy", "beta": 0.01, "rollout_choice": "peak",
                               "evaluate_on": "validation", "seeds": [0]}
    sec["data"]["tokenizer"] = str(tmp_path / "tok")
    sec["policy"]["pretrained"] = str(tmp_path / "ckpt")
    sec["evaluate"].update(batch_size=8, max_new_tokens=6, profile_prompts=4)
    sec["rollout"].update(prompts_per_step=2, group_size=2, max_new_tokens=6)
    sec["rl"].update(seeds=[0], steps=2, loss_max_len=6)
    path = tmp_path / "echorl.yaml"
    path.write_text(yaml.safe_dump(params))
    return tmp_path, path


def test_paper_profile_chain_on_local_checkpoint(paper_setup):
    from repro.papers.echorl import analysis, data, rl, sft

    tmp, path = paper_setup
    r = tmp / "results"
    d = run_stage("echorl", data, path, r / "data", ["data"])
    assert d["train_rows"] == d["id_test_rows"] == d["ood_test_rows"] == 12 and d["vocab_size"] > 256
    s = run_stage("echorl", sft, path, r / "sft", ["policy", "sft", "evaluate"], [("data", r / "data")])
    assert s["steps"] == 0 and 0 <= s["id_accuracy"] <= 1
    assert json.loads((r / "sft" / "model" / "config.json").read_text())["model_type"] == "qwen2"
    assert len(json.loads((r / "sft" / "items.json").read_text())["ood"]) == d["ood_test_rows"]
    inputs = [("sft", r / "sft")]
    runs = [(arm, 0) for arm in ("grpo", "echo", "random_step", "min_entropy", "whole_sft", "dapo", "dapo_echo",
                                 "echo_val")] + [("grpo", 100)]  # 100: the A/A control's first seed
    test_prompts = datasets.load_from_disk(str(r / "data" / "dataset"))
    for arm, seed in runs:
        out = r / "rl" / arm / f"seed{seed}"
        m = run_stage("echorl", rl, path, out, ["rollout", "rl", "evaluate", "arms"],
                      [("data", r / "data"), ("sft", r / "sft")], [("arm", arm), ("seed", str(seed))])
        history = json.loads((out / "history.json").read_text())
        items = json.loads((out / "items.json").read_text())
        assert m["arm"] == arm and len(history) == 2 and len(items["id"]["correct"]) == d["id_test_rows"]
        on = "val" if arm == "echo_val" else "test"
        assert m["evaluated_on"] == ("validation" if on == "val" else "test")
        assert all(items[s]["prompt"] == list(test_prompts[f"{s}_{on}"]["prompt"]) for s in ("id", "ood"))
        # dynamic sampling trains on at most prompts_per_step (2) of the 3 x 2 sampled groups
        assert all(h["policy_groups"] == (min(2, round(6 * (1 - h["degenerate_fraction"]))) if "dapo" in arm else 2)
                   for h in history)
        assert 0 <= m["clip_share"] <= 1 and (m["clip_share"] == 0 if arm in ("grpo", "dapo") else True)
        inputs.append((f"rl_{arm}_seed{seed}", out))
    # same params and seed -> the same run
    again = run_stage("echorl", rl, path, r / "again", ["rollout", "rl", "evaluate", "arms"],
                      [("data", r / "data"), ("sft", r / "sft")], [("arm", "echo"), ("seed", "0")])
    assert (r / "again" / "items.json").read_text() == (r / "rl" / "echo" / "seed0" / "items.json").read_text()
    assert again["clip_share"] == json.loads((r / "rl" / "echo" / "seed0" / "metrics.json").read_text())["metrics"]["clip_share"]
    m = run_stage("echorl", analysis, path, r / "analysis", ["arms", "data", "sft", "rollout", "rl"], inputs)
    assert set(m["arms"]) == {"grpo", "echo", "random_step", "min_entropy", "whole_sft", "dapo", "dapo_echo"}
    assert m["arms"]["grpo"]["seeds"] == [0] and m["aa_arm"]["seeds"] == [0]
    assert m["e2"]["id"]["n_items"] == 12 and m["e2"]["id"]["ci"] == [None, None]  # one seed: no interval
    assert not m["controls"]["seed_aa_id"]["passed"]  # one A/A pair: no interval, so no pass
    assert [r["arm"] for r in m["sweep"]["rows"]] == ["echo_val"] and m["sweep"]["chosen_beta"] == 0.01
    assert (r / "analysis" / "accuracy.png").stat().st_size > 1000
    assert "ID and OOD: the hub splits" in (r / "analysis" / "tables.md").read_text()
