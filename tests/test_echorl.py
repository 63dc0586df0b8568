"""EchoRL: task generator and verifier, step splitting and entropies, EchoClip selection, the
auxiliary loss's tokens, claim decisions; the paper-profile code path on local files."""
import copy
import json
import random

import numpy as np
import pytest
import torch
import yaml

from conftest import run_stage

from repro.core import config as rc
from repro.data.arithmetic import (CharTokenizer, extract_answer, generate_task, in_kind, sample_split, solve,
                                   step_has_carry, verify)
from repro.papers.echorl import effects, method
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


SEEDS = {"grpo": range(6), "echo": range(6), "random_step": range(3), "min_entropy": range(3),
         "whole_sft": range(3)}
ARMS = {"grpo": {"clip": "none"}, "echo": {"clip": "max_entropy", "beta": 0.1, "rollout_choice": "peak"},
        **{a: {"clip": a, "beta": 0.1, "rollout_choice": "peak"} for a in ("random_step", "min_entropy")},
        "whole_sft": {"clip": "whole_response", "beta": 0.1, "rollout_choice": "peak"}}
SFT = {"id_accuracy": 0.5, "ood_accuracy": 0.1, "steps": 450, "entropy_profile": {
    "carry_steps": 0.5, "no_carry_steps": 0.1, "peak_at_carry_fraction": 0.9, "carry_base_rate": 0.5}}


def run_record(arm, seed, id_items, ood_items, first=0.1, last=0.2, clips=0.5):
    return {"arm": arm, "seed": seed, "id_accuracy": float(np.mean(id_items)), "ood_accuracy": float(np.mean(ood_items)),
            "seconds_per_step": 1.0, "all_success_first_quarter": first, "all_success_last_quarter": last,
            "pg_norm_first_quarter": 1.0, "pg_norm_last_quarter": 0.5, "clips_per_step": clips,
            "correct": {"id": [float(x) for x in id_items], "ood": [float(x) for x in ood_items]}}


def simulated_runs(gain: dict[str, float], rise: float, prompts: int = 300, seed: int = 0) -> dict:
    """Every arm of a seed starts from the same per-prompt GRPO results; an arm redraws 20% of its
    prompts at GRPO's rate (what another RL run changes) and then turns a share `gain` of its wrong
    prompts right (negative: right prompts wrong). E1's rise = last - first quarter, with seed noise."""
    rng = np.random.default_rng(seed)
    runs = {}
    for s in range(6):
        base = {split: rng.random(prompts) < p for split, p in (("id", 0.6), ("ood", 0.2))}
        for arm, seeds in SEEDS.items():
            if s not in seeds:
                continue
            out = {}
            for split, b in base.items():
                x = b.copy()
                if arm != "grpo":
                    redo = rng.random(prompts) < 0.2
                    x[redo] = rng.random(int(redo.sum())) < b.mean()
                    g = gain.get(arm, 0.0)
                    flip = (~x if g > 0 else x) & (rng.random(prompts) < abs(g))
                    x = x ^ flip
                out[split] = x
            runs.setdefault(arm, []).append(run_record(arm, s, out["id"], out["ood"],
                                                       first=0.1, last=0.1 + rise + rng.normal(0, 0.05)))
    return runs


def verdicts(runs):
    m = effects.decide(runs, SFT, ARMS)
    checks = [c for v in evaluate_claims(rc.load_paper("echorl")["claims"], m) for c in v["checks"]]
    return {c["metric"]: c["verdict"] for c in checks}


def test_effects_pair_arms_by_seed_and_prompt():
    # seed s: grpo right on prompts 0..4 of 10 (ID) and 0 of 10 (OOD); echo on 0..(5+s) ID, 0..2 OOD
    ids = lambda k: [1.0] * k + [0.0] * (10 - k)  # noqa: E731
    runs = {"grpo": [run_record("grpo", s, ids(5), ids(1), first=0.1, last=0.1 + 0.1 * s) for s in range(3)],
            "echo": [run_record("echo", s, ids(5 + s), ids(2)) for s in range(3)],
            "random_step": [run_record("random_step", s, ids(5), ids(1)) for s in (0, 2)],
            "echo_beta1": [run_record("echo_beta1", 1, ids(9), ids(1))]}
    arms = {**ARMS, "echo_beta1": {"clip": "max_entropy", "beta": 1.0, "rollout_choice": "peak", "seeds": [1]}}
    m = effects.decide(runs, SFT, arms)
    assert m["e1"]["increase"]["value"] == pytest.approx(0.1) and m["e1"]["increase"]["n"] == 3
    e = m["e2"]["id"]
    assert e["value"] == pytest.approx(0.1) and e["seeds"] == [0, 1, 2] and e["unit"] == "seeds x items"
    assert e["samples"] == pytest.approx([0.0, 0.1, 0.2]) and e["n_items"] == 30
    assert e["ci"][0] <= e["ci_items"][0] <= e["value"] <= e["ci_items"][1] <= e["ci"][1]
    # runs of echo (0.5, 0.6, 0.7) against grpo's (0.5 x 3): 6 of 9 pairs above, 3 ties at half
    assert e["p_improvement"] == pytest.approx(7.5 / 9)
    # OOD: the same difference on every seed, yet one prompt of ten carries it: the prompts' noise counts
    e = m["e2"]["ood"]
    assert e["samples"] == pytest.approx([0.1] * 3) and e["ci"][0] < 0.1 < e["ci"][1]
    # E3 pairs on the seeds the ablation ran; mean(ID, OOD): seed 0 (0 + 0.1) / 2, seed 2 (0.2 + 0.1) / 2
    assert m["e3"]["vs_random"]["seeds"] == [0, 2] and m["e3"]["vs_random"]["value"] == pytest.approx(0.1)
    assert "vs_min_entropy" not in m["e3"]
    # a one-seed sweep arm: paired with GRPO on its seed, item interval only
    assert [r["arm"] for r in m["echo_vs_base"]] == ["echo", "echo_beta1"]
    row = m["echo_vs_base"][1]
    assert row["id"]["seeds"] == [1] and row["id"]["ci"] == [None, None]
    assert row["id"]["value"] == pytest.approx(0.4) and row["id"]["ci_items"][0] > 0
    tables = effects.report_tables(m, arms, rc.load_paper("echorl")["mini"])
    assert tables.startswith("## Design (amended for issue 16)")
    assert "OOD: 3-4 operands of 2-2 digits, a combination held out" in tables and "SFT init solves 10.0%" in tables
    assert "0.50 clips per step in the echo arm" in tables and "on the same 10 ID and 10 OOD prompts" in tables
    assert "| echo - grpo, ID (E2) | +10.0 |" in tables and "| 0.83 | 0, 1, 2 |" in tables and "| echo_beta1 | grpo | 1 | 1 | +40.0 |" in tables
    assert "same 10 ID and 10 OOD test prompts" in tables


def test_mean_of_id_and_ood_weights_the_splits_equally():
    run = {"correct": {"id": [1.0, 1.0, 1.0, 0.0], "ood": [0.0, 1.0]}}
    assert np.mean(effects.items(run, "avg")) == pytest.approx((0.75 + 0.5) / 2)


def test_null_effects_are_not_reproduced():
    v = verdicts(simulated_runs(gain={}, rise=0.0))
    assert all(x in (NOT_REPRODUCED, INCONCLUSIVE) for x in v.values()), v
    # an arm identical to GRPO on every prompt: a zero-width interval on 0, which "> 0" rejects
    runs = simulated_runs(gain={}, rise=0.0)
    runs["echo"] = [{**r, "arm": "echo"} for r in runs["grpo"]]
    assert verdicts(runs)["e2.id"] == NOT_REPRODUCED
    # the max-entropy clip clearly worse than the ablations: ">= 0" not reproduced
    v = verdicts(simulated_runs(gain={"random_step": 0.3, "min_entropy": 0.3}, rise=-0.2))
    assert v["e1.increase"] == v["e3.vs_random"] == v["e3.vs_min_entropy"] == NOT_REPRODUCED


def test_clear_effects_are_reproduced():
    v = verdicts(simulated_runs(gain={"echo": 0.3}, rise=0.2))
    assert set(v) == {"e1.increase", "e2.id", "e2.ood", "e3.vs_random", "e3.vs_min_entropy"}
    assert all(x == REPRODUCED for x in v.values()), v


@pytest.fixture
def paper_setup(tmp_path):
    """The `paper` section with hub names swapped for a local BPE tokenizer, a tiny Qwen2 checkpoint
    saved with save_pretrained, and local JSON files read through datasets.load_dataset."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from conftest import save_bpe_tokenizer

    rng = random.Random(0)
    files = {}
    for split in ("train", "math", "mmlu"):
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
    for name, f in (("train", "train"), ("id_test", "math"), ("ood_test", "mmlu")):
        sec["data"]["source"]["splits"][name].update(
            load={"path": "json", "data_files": str(files[f])}, split="train")
        sec["data"]["source"]["splits"][name]["columns"] = {"prompt": "problem", "answer": "answer"}
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
    inputs = [("sft", r / "sft")]
    for arm in ("grpo", "echo", "random_step", "min_entropy", "whole_sft", "dapo", "dapo_echo"):
        m = run_stage("echorl", rl, path, r / "rl" / arm / "seed0", ["rollout", "rl", "evaluate", "arms"],
                      [("data", r / "data"), ("sft", r / "sft")], [("arm", arm), ("seed", "0")])
        history = json.loads((r / "rl" / arm / "seed0" / "history.json").read_text())
        items = json.loads((r / "rl" / arm / "seed0" / "items.json").read_text())
        assert m["arm"] == arm and len(history) == 2 and len(items["id"]["correct"]) == d["id_test_rows"]
        # dynamic sampling trains on at most prompts_per_step (2) of the 3 x 2 sampled groups
        assert all(h["policy_groups"] == (min(2, round(6 * (1 - h["degenerate_fraction"]))) if "dapo" in arm else 2)
                   for h in history)
        inputs.append((f"rl_{arm}_seed0", r / "rl" / arm / "seed0"))
    m = run_stage("echorl", analysis, path, r / "analysis", ["arms", "data", "sft", "rollout", "rl"], inputs)
    assert set(m["arms"]) == {"grpo", "echo", "random_step", "min_entropy", "whole_sft", "dapo", "dapo_echo"}
    assert m["e2"]["id"]["n_items"] == 12 and m["e2"]["id"]["ci"] == [None, None]  # one seed: no interval
    assert (r / "analysis" / "accuracy.png").stat().st_size > 1000
    assert "ID and OOD: the hub splits" in (r / "analysis" / "tables.md").read_text()
