"""ProactiveLLM and the shared streaming machinery: who sees what in the streaming masks, incremental
READ/WRITE decoding against one masked pass, schedules, the SPSD stop-gradient, AL/LAAL, the loop's
bounds, the tasks' oracles, claim decisions on constructed curves, and the `paper` profile's code
path on a tiny local checkpoint, a local tokenizer and local data files."""
import copy
import json
import random

import numpy as np
import pytest
import torch
import yaml

from conftest import run_stage

from repro.core import config as rc
from repro.report import intervals as iv
from repro.papers.proactivellm import _synth as synth, effects, method
from repro.papers.proactivellm._task import WordTokenizer, batch, encode
from repro.streaming.latency import al, al_reference, laal
from repro.streaming.loop import StreamSession, stream
from repro.streaming.masks import group_position_ids, streaming_allowed, streaming_mask


def tiny_lm(attn="eager", vocab=40, seed=0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=vocab, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, intermediate_size=64, max_position_embeddings=64,
                      attn_implementation=attn)
    return LlamaForCausalLM(cfg).eval()


# --- masks and positions --------------------------------------------------------------------------

def test_streaming_mask_who_sees_what():
    # one example: 3 source tokens (+1 padding), 3 target rows (+0 padding), visibility 1, 1, 3
    allowed = streaming_allowed(torch.tensor([3]), torch.tensor([3]), torch.tensor([[1, 1, 3]]), 4, 3)[0].int()
    expected = torch.tensor([
        # s0 s1 s2 pad t0 t1 t2
        [1, 0, 0, 0, 0, 0, 0],  # s0: causal source
        [1, 1, 0, 0, 0, 0, 0],  # s1
        [1, 1, 1, 0, 0, 0, 0],  # s2: never a target
        [0, 0, 0, 1, 0, 0, 0],  # padding sees only itself
        [1, 0, 0, 0, 1, 0, 0],  # t0 sees 1 source token
        [1, 0, 0, 0, 1, 1, 0],  # t1 sees 1 source token and t0
        [1, 1, 1, 0, 1, 1, 1],  # t2 sees the whole source (not the padding)
    ])
    assert torch.equal(allowed, expected)
    # a visibility beyond the real source is clipped to it
    clipped = streaming_allowed(torch.tensor([2]), torch.tensor([1]), torch.tensor([[4]]), 4, 1)[0]
    assert clipped[4, :4].tolist() == [True, True, False, False]
    add = streaming_mask(torch.tensor([3]), torch.tensor([3]), torch.tensor([[1, 1, 3]]), 4, 3)
    assert add.shape == (1, 1, 7, 7) and add[0, 0, 4, 0] == 0 and add[0, 0, 4, 1] == torch.finfo(torch.float32).min


def test_group_positions_restart_for_the_target():
    pos = group_position_ids(2, 3, 2, target_offset=5)
    assert pos.tolist() == [[0, 1, 2, 5, 6], [0, 1, 2, 5, 6]]


def one_pass_logits(lm, sources, targets, vis_units):
    """Logits of the target rows in one masked forward pass."""
    b = len(sources)
    s_w = max(sum(map(len, s)) for s in sources)
    t_w = max(map(len, targets))
    ids = torch.zeros(b, s_w + t_w, dtype=torch.long)
    vis = torch.zeros(b, t_w, dtype=torch.long)
    for i in range(b):
        flat = [t for u in sources[i] for t in u]
        ids[i, :len(flat)] = torch.tensor(flat)
        ids[i, s_w:s_w + len(targets[i])] = torch.tensor(targets[i])
        ends = torch.tensor([len(u) for u in sources[i]]).cumsum(0)
        vis[i, :len(vis_units[i])] = ends[torch.tensor(vis_units[i]) - 1]
    src_len = torch.tensor([sum(map(len, s)) for s in sources])
    mask = streaming_mask(src_len, torch.tensor([len(t) for t in targets]), vis, s_w, t_w)
    with torch.no_grad():
        return lm(input_ids=ids, attention_mask=mask, position_ids=group_position_ids(b, s_w, t_w, 2)).logits[:, s_w:]


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_incremental_read_write_equals_one_masked_pass(attn):
    lm = tiny_lm(attn)
    sources = [[[3, 4], [5], [6, 7, 8], [9]], [[10], [11, 12], [13]]]  # units of 1-3 tokens
    targets = [[1, 20, 21, 22, 23], [1, 24, 25, 26]]                     # start token, then y_1..
    vis = [[1, 2, 2, 4, 4], [2, 2, 3, 3]]                                 # units seen by each row
    full = one_pass_logits(lm, sources, targets, vis)
    session = StreamSession(lm, sources, start_id=1, max_len=8, target_offset=2, need_attentions=attn == "eager")
    state = session.advance(torch.tensor([True, True]))
    diff = 0.0
    for row in range(max(map(len, targets))):
        live = torch.tensor([row < len(t) for t in targets])
        need = torch.tensor([v[row] if row < len(v) else 0 for v in vis])
        while bool((state.units_read < need).any()):  # READ until this row's visibility
            state = session.advance(state.units_read < need)
        for i in range(2):
            if live[i]:
                diff = max(diff, (state.logits[i] - full[i, row]).abs().max().item())
        nxt = torch.tensor([t[row + 1] if row + 1 < len(t) else 0 for t in targets])
        session.write(live, nxt)  # WRITE the reference token (teacher forcing)
        state = session.advance(torch.tensor([False, False]))
    assert diff <= 1e-4
    if attn == "eager":  # the query's attention is a distribution over the merged cache
        assert torch.allclose(state.attentions[0].sum(-1), torch.ones(2, 4), atol=1e-5)


def test_without_an_explicit_mask_the_target_loses_the_source():
    """The packed-sequence trap: with restarting positions and no 4D mask, transformers reads the
    reset as a sequence boundary and the target rows put no attention on the source (as in training,
    without a cache)."""
    lm = tiny_lm("eager")
    ids = torch.tensor([[3, 4, 5, 1, 20, 21]])
    pos = group_position_ids(1, 3, 3, 0)
    mask = streaming_mask(torch.tensor([3]), torch.tensor([3]), torch.tensor([[3, 3, 3]]), 3, 3)
    with torch.no_grad():
        plain = lm(input_ids=ids, position_ids=pos, use_cache=False, output_attentions=True).attentions[0]
        masked = lm(input_ids=ids, position_ids=pos, attention_mask=mask, use_cache=False,
                    output_attentions=True).attentions[0]
    assert plain[0, :, 3:, :3].sum() == 0
    assert (masked[0, :, 3:, :3].sum(-1) > 0.1).all()


# --- the loop -----------------------------------------------------------------------------------

def test_loop_never_reads_past_the_source_and_terminates():
    lm = tiny_lm("sdpa", vocab=30)
    sources = [[[3], [4, 5], [6]], [[7]], [[8], [9], [10], [11], [12]]]
    rng = torch.Generator().manual_seed(0)
    policies = {"never_write": lambda s: torch.zeros_like(s.exhausted),
                "always_write": lambda s: torch.ones_like(s.exhausted),
                "random": lambda s: torch.rand(s.units_read.shape, generator=rng) < 0.5}
    for name, policy in policies.items():
        for eos in (2, 29):
            outs = stream(lm, sources, policy, start_id=1, eos_id=eos, max_len=6)
            for src, o in zip(sources, outs):
                assert len(o.tokens) <= 6 and (o.ended or len(o.tokens) == 6)
                assert all(1 <= d <= len(src) for d in o.delays)
                assert o.delays == sorted(o.delays)
                if name == "never_write":  # read-then-generate: everything written at the end
                    assert set(o.delays) <= {len(src)}


def test_premature_eos_becomes_a_read():
    lm = tiny_lm("sdpa", vocab=30)
    with torch.no_grad():
        lm.lm_head.weight.zero_()  # all logits equal: the argmax is token 0, used as EOS here
    sources = [[[3], [4], [5], [6]]]
    always = lambda s: torch.ones_like(s.exhausted)  # noqa: E731
    held = stream(lm, sources, always, start_id=1, eos_id=0, max_len=5, eos_needs_full_source=True)[0]
    free = stream(lm, sources, always, start_id=1, eos_id=0, max_len=5, eos_needs_full_source=False)[0]
    assert held.ended and held.tokens == [] and held.units_read == 4  # read on to the end, then EOS
    assert free.ended and free.tokens == [] and free.units_read == 1  # EOS allowed at once


# --- schedules, objective -------------------------------------------------------------------------

def test_visibility_schedules_are_monotone_and_end_at_the_full_source():
    rng = random.Random(0)
    for _ in range(200):
        s, rows = rng.randint(1, 12), rng.randint(1, 10)
        for kind in ("msm", "msm_spsd", "msm_oracle"):
            for end in (True, False):
                vis = method.schedule(kind, s, rows, rng, eos_full_source=end)
                assert len(vis) == rows and all(1 <= v <= s for v in vis)
                assert vis == sorted(vis)
                if end:
                    assert vis[-1] == s
    assert method.schedule("waitk", 6, 5, rng, k=3, eos_full_source=False) == [3, 4, 5, 6, 6]
    assert method.schedule("waitk", 9, 3, rng, k=2) == [2, 3, 9]
    assert method.schedule("full", 4, 3, rng) == [4, 4, 4]
    draws = [tuple(method.schedule("msm", 8, 4, rng, eos_full_source=False)) for _ in range(50)]
    assert len(set(draws)) > 10  # random per sample, not one fixed schedule


def test_msm_content_rows_are_unbiased_and_the_eos_row_follows_the_task():
    """T-1 content rows, each view uniform over 1..S (mean (S+1)/2); the first version's T sorted draws
    with the last overwritten made them the lower order statistics of T draws (mean ~3.4 here)."""
    rng = random.Random(0)
    for end in (True, False):
        vis = np.array([method.schedule("msm", 8, 3, rng, eos_full_source=end) for _ in range(4000)])
        assert vis[:, :2].mean() == pytest.approx(4.5, abs=0.1)
        assert (vis[:, 2] >= vis[:, 1]).all()
        if end:
            assert (vis[:, 2] == 8).all()
        else:  # the EOS row drawn between the last content row's view and S
            assert vis[:, 2].min() < 8 and (vis[:, 2] > vis[:, 1]).any()
    assert method.schedule("msm", 5, 1, rng, eos_full_source=True) == [5]  # an empty target: the EOS row only


def toy_examples():
    tok = WordTokenizer(["a", "b", "c", "x", "y"])
    rows = [{"source": ["a", "b", "c"], "target": ["x", "y"], "oracle": [2, 1]},
            {"source": ["c", "a"], "target": ["y"], "oracle": [2]}]
    return tok, [encode(r, tok, eos_full_source=True) for r in rows]


def test_encode_makes_the_oracle_monotone_and_batch_lays_out_rows():
    tok, (e1, e2) = toy_examples()
    assert e1.oracle == [2, 2, 3] and e2.oracle == [2, 2]  # running max, EOS needs the full source
    b = batch([e1, e2], [[1, 2, 3], [2, 2]], tok)
    assert b["src_width"] == 3 and b["input_ids"].shape == (2, 6)
    assert b["labels"][0, 3:].tolist() == [tok.stoi["x"], tok.stoi["y"], tok.eos_id]
    assert b["labels"][1, 3:].tolist() == [tok.stoi["y"], tok.eos_id, -100]
    assert b["input_ids"][0, 3] == tok.sep_id
    arm = {"kind": "msm_oracle", "label_weight": 1.0}
    tb = method.training_batch([e1], arm, tok, random.Random(0), True)
    suff = tb["sufficient"][0]
    assert (suff[:3] == -1).all()  # no label on source rows
    vis = [int(v) for v in (tb["attention_mask"][0, 0, 3:, :3] == 0).sum(-1)]
    assert suff[3:].tolist() == [float(v >= o) for v, o in zip(vis, e1.oracle)]


def test_spsd_teacher_gets_no_gradient():
    tok, examples = toy_examples()
    arm = {"kind": "msm_spsd", "lambda": 0.0, "beta": 1.0, "temperature": 1.0}
    lm = tiny_lm("sdpa", vocab=len(tok))
    obj = method.Objective(lm, arm)
    b = method.training_batch(examples, arm, tok, random.Random(0), True)
    assert (b["attention_mask"] != b["full_mask"]).any()  # some row's student view is partial
    out = obj(**b)
    torch.autograd.backward(out.parts["kl"])
    grads = [p.grad.clone() for p in lm.parameters()]
    # reference: the teacher computed separately, without grad, as a constant
    lm.zero_grad()
    with torch.no_grad():
        teacher = method.lm_forward(lm, b["input_ids"], b["full_mask"], b["position_ids"]).logits
    student = method.lm_forward(lm, b["input_ids"], b["attention_mask"], b["position_ids"]).logits
    method.spsd_kl(student, teacher, b["labels"], 1.0).backward()
    for g, p in zip(grads, lm.parameters()):
        assert torch.allclose(g, p.grad, atol=1e-6)
    # and a teacher that did get gradient would give other gradients: the check can fail
    lm.zero_grad()
    teacher = method.lm_forward(lm, b["input_ids"], b["full_mask"], b["position_ids"]).logits
    t = torch.log_softmax(teacher[b["labels"] != -100], -1)
    s = torch.log_softmax(method.lm_forward(lm, b["input_ids"], b["attention_mask"], b["position_ids"])
                          .logits[b["labels"] != -100], -1)
    (t.exp() * (t - s)).sum(-1).mean().backward()
    assert any(not torch.allclose(g, p.grad, atol=1e-6) for g, p in zip(grads, lm.parameters()))


def test_auroc_states_reachable_drops_unknowable_prefixes():
    from repro.papers.proactivellm.evaluate import state_scores

    tok, (e1, _) = toy_examples()  # 3 source words, oracle per row [2, 2, 3]
    lm = tiny_lm("eager", vocab=len(tok))
    cfg = {"newest_units": 1, "layers": "all"}
    every, labels, _ = state_scores(lm, [e1], tok, ["entropy", "attention"], cfg, reachable=False)
    reach, rlabels, items = state_scores(lm, [e1], tok, ["entropy", "attention"], cfg, reachable=True)
    # all: c = 1..3 x 3 rows; reachable: row r only once c >= oracle of row r-1 (1, 2, 2)
    assert len(labels) == 9 and len(rlabels) == 7 and len(reach["entropy"]) == 7
    assert labels.tolist() == [0, 0, 0, 1, 1, 0, 1, 1, 1]   # c >= oracle, c-major
    assert rlabels.tolist() == [0, 1, 1, 0, 1, 1, 1]
    assert items.tolist() == [0] * 7  # every state belongs to the one example


def test_fixed_chunk_policy_reads_chunks_and_writes_their_share():
    from repro.streaming.loop import StepState

    def decide(read, written, n=5, size=3, rate=0.5):
        state = StepState(logits=torch.zeros(1, 4), units_read=torch.tensor([read]), n_units=torch.tensor([n]),
                          written=torch.tensor([written]), key_unit=torch.zeros(1, 1))
        return bool(method.chunk_policy(size, rate)(state)[0])

    assert not decide(1, 0) and not decide(2, 0)       # inside the first chunk: READ
    assert decide(3, 0) and decide(3, 1)                # after it: WRITE up to ceil(3 x 0.5) = 2 tokens
    assert not decide(3, 2) and not decide(4, 2)        # then READ the next chunk
    assert decide(5, 2) and not decide(5, 3)            # the source's end closes a chunk: ceil(2.5) = 3


def test_decision_scores():
    logits = torch.tensor([[10.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    ent = method.entropy_score(logits)
    assert ent[0] > ent[1] and abs(ent[1] + torch.log(torch.tensor(3.0))) < 1e-5
    assert torch.allclose(method.maxprob_score(logits)[1], torch.tensor(1 / 3))
    attn = [torch.tensor([[[0.1, 0.2, 0.7]]]), torch.tensor([[[0.5, 0.5, 0.0]]])]  # [B=1, H=1, K=3]
    newest = torch.tensor([[0.0, 0.0, 1.0]])
    assert torch.allclose(method.attention_score(attn, newest, "all"), torch.tensor([-0.35]))
    assert torch.allclose(method.attention_score(attn, newest, [-1]), torch.tensor([0.0]))


# --- latency -----------------------------------------------------------------------------------

def test_al_and_laal_on_hand_computed_delays():
    # |x| = 4, delays 2, 3, 4, 4: gamma = 1, tau = 3 -> ((2-0) + (3-1) + (4-2)) / 3 = 2
    assert al([2, 3, 4, 4], 4) == pytest.approx(2.0)
    # hypothesis 2 tokens, reference 4: AL rate 2/4 -> (1 + (4 - 2)) / 2 = 1.5; LAAL rate 4/4 -> (1 + 3) / 2
    assert al([1, 4], 4) == pytest.approx(1.5)
    assert laal([1, 4], 4, 4) == pytest.approx(2.0)
    # an over-long hypothesis cannot lower LAAL below AL's definition with the hypothesis length
    assert laal([2, 3, 4, 4], 4, 2) == pytest.approx(al([2, 3, 4, 4], 4))
    assert al([4, 4], 4) == pytest.approx(4.0)  # read-then-generate: AL = |x|
    assert al([], 5) == 5.0


def test_al_reference_is_simuleval_default():
    """SimulEval's ALScorer (1.1.4, use_ref_len by default) on cases computed by hand from its code:
    gamma = |ref| / |src|, AL = sum_{t < tau} (d_t - t / gamma) / tau, tau = first t with d_t >= |src|.
    (SimulEval cannot be installed into the shared venv: it pins tqdm==4.64.1 and bitarray==2.6.0.)"""
    # |src| 4, |ref| 4, hypothesis [1, 4]: gamma 1 -> ((1 - 0) + (4 - 1)) / 2 = 2; the hypothesis rate gives 1.5
    assert al_reference([1, 4], 4, 4) == pytest.approx(2.0) and al([1, 4], 4) == pytest.approx(1.5)
    # |ref| 2, delays 2, 3, 4, 4: gamma 0.5 -> ((2 - 0) + (3 - 2) + (4 - 4)) / 3 = 1
    assert al_reference([2, 3, 4, 4], 4, 2) == pytest.approx(1.0)
    # |src| 6, |ref| 3, delays 3, 5, 6: gamma 0.5 -> ((3 - 0) + (5 - 2) + (6 - 4)) / 3 = 8 / 3
    assert al_reference([3, 5, 6], 6, 3) == pytest.approx(8 / 3)
    assert al_reference([], 5, 3) == 5.0  # no output: counted as waiting for the whole source (SimulEval skips it)


# --- tasks and their oracles ---------------------------------------------------------------------

def test_synthmt_rules_and_oracle():
    p = {"kind": "synthmt", "nouns": 6, "adjectives": 3, "verbs": 4, "clauses": [1, 3], "adjective_prob": 0.5,
         "negation_prob": 0.5}
    lex = synth.lexicon(p, 0)
    rng = random.Random(1)
    negated = plain = 0
    for _ in range(300):
        ex = synth.synthmt_example(rng, p, lex)
        src, tgt, need = ex["source"], ex["target"], ex["oracle"]
        assert len(tgt) == len(need) and all(1 <= n <= len(src) for n in need)
        for w, n in zip(tgt, need):
            settled_by = src[n - 1]
            if w[0] in "na":  # nouns and adjectives are settled by the noun
                assert settled_by[0] == "N"
            elif w[0] in "uv":  # verbs by the clause end: `not` for a flipped verb, else `.`
                assert settled_by == ("not" if w[0] == "u" else ".")
                negated += w[0] == "u"
                plain += w[0] == "v"
            else:
                assert w == "." and settled_by == "."
        assert "not" not in tgt and len(tgt) == len(src) - src.count("not")
    assert negated > 50 and plain > 50


def test_synthqa_oracle_is_the_answer_position():
    rng = random.Random(0)
    p = {"categories": 3, "members": 5, "facts": [2, 6]}
    positions = set()
    for _ in range(200):
        ex = synth.synthqa_example(rng, p)
        src, (answer,), (need,) = ex["source"], ex["target"], ex["oracle"]
        asked = src[1][1:]
        assert src[need - 1] == answer and answer.startswith(f"w{asked}_")
        assert sum(w.startswith(f"w{asked}_") for w in src) == 1  # the asked type occurs exactly once
        positions.add(need)
    assert len(positions) > 3


def test_generated_splits_are_disjoint_and_reproducible():
    p = {"kind": "synthqa", "categories": 3, "members": 4, "facts": [2, 4], "train": 300, "validation": 20,
         "test": 20}
    a, b = synth.generate(p, 0), synth.generate(p, 0)
    assert a["train"]["source"] == b["train"]["source"]
    held = {" ".join(s) for split in ("validation", "test") for s in a[split]["source"]}
    assert not held & {" ".join(s) for s in a["train"]["source"]}


# --- claims --------------------------------------------------------------------------------------

def pts(policy, xs, qs, **extra):
    if policy == "read_all":
        extra = {"by_position": [float(q) for q in qs[:1]] * 4, **extra}
    return [{"policy": policy, "al": float(x), "al_ref": float(x) + 0.2, "laal": float(x) + 0.5, "quality": float(q),
             "first_write_fraction": 0.5, **extra} for x, q in zip(xs, qs)]


def test_curve_frontier_interpolation_and_knots():
    c = effects.Curve(pts("h", [0, 1, 2, 2], [0.5, 0.2, 0.7, 0.8]))  # two points at AL 2: the better counts
    assert c.al_range == (0, 2) and c.quality_range == (0.5, 0.8)
    # best quality at AL <= x: the earlier 0.5 until the last segment climbs past it at x = 1.5
    assert c.quality_at([0.5, 1.0, 1.5, 1.75, 2.0]).tolist() == pytest.approx([0.5, 0.5, 0.5, 0.65, 0.8])
    assert sorted(c.knots().tolist()) == pytest.approx([0, 1, 1.5, 2])
    # lowest AL reaching q: the first point at once for q <= 0.5, else on the segment into the first best
    assert c.latency_at([0.4, 0.5, 0.65, 0.8]).tolist() == pytest.approx([0, 0, 1.75, 2])
    base = effects.Curve(pts("w", [1, 3], [0.3, 0.9]))
    # shared AL [1, 2]: head - base at the knots 1, 1.5, 2: 0.5 - 0.3, 0.5 - 0.45, 0.8 - 0.6
    assert effects.worst_gap(c, base) == pytest.approx(0.05)
    assert effects.quality_gain(c, base) > 0 and effects.latency_gain(c, base) > 0
    assert effects.worst_gap(c, effects.Curve(pts("w", [5, 6], [0.1, 0.2]))) is None  # no shared AL
    assert effects.latency_gain(c, effects.Curve(pts("w", [1, 2], [0.85, 0.9]))) is None  # no shared quality


WAITK_AL, WAITK_Q = np.array([2.0, 4, 6, 8]), np.array([0.2, 0.5, 0.7, 0.78])


def constructed_runs(seeds, head_shift, noise, entropy=(0.6, 0.6, 0.6), v3_read_all=0.95, attention_shift=None,
                     chunk_shift=0.0, dip=None, v0_read_all=0.95, head_al=(3.0, 5, 7)):
    """{arm: {seed: evaluate metrics}}: per seed a wait-k curve, a fixed-chunk curve `chunk_shift`
    above it, V3 heads at AL `head_al` lying `head_shift` above it (`dip`: (index, shift) of one head
    point moved), entropy AUROC of V0, V2, V3 around `entropy`, all with per-seed noise."""
    runs = {arm: {} for arm in ("v0", "v1", "v2", "v3", "v4")}
    head_al = np.asarray(head_al, float)
    for s in seeds:
        rng = np.random.default_rng(s)
        jitter = lambda n: rng.normal(0, noise, n)  # noqa: E731
        on_waitk = np.interp(head_al, WAITK_AL, WAITK_Q)
        v3 = pts("read_all", [10], [v3_read_all]) + pts("oracle", [3], [0.8])
        v3 += pts("chunk", WAITK_AL + jitter(4), WAITK_Q + chunk_shift + jitter(4))
        for h in effects.HEADS:
            shift = np.full(len(head_al), attention_shift if h == "attention" and attention_shift is not None else head_shift)
            if dip is not None:
                shift[dip[0]] = dip[1]
            v3 += pts(h, head_al + jitter(len(head_al)), on_waitk + shift + jitter(len(head_al)))
        au = [e + n for e, n in zip(entropy, jitter(3))]
        full = lambda e: {"entropy": e, "maxprob": e, "attention": e}  # noqa: E731
        runs["v0"][s] = {"points": pts("read_all", [10], [v0_read_all]), "auroc": full(au[0]), "attention_sign": 1.0}
        runs["v1"][s] = {"points": pts("waitk", WAITK_AL + jitter(4), WAITK_Q + jitter(4)),
                         "auroc": full(0.5 + rng.normal(0, noise)), "attention_sign": 1.0}
        runs["v2"][s] = {"points": [], "auroc": full(au[1]), "attention_sign": -1.0}
        runs["v3"][s] = {"points": v3, "auroc": full(au[2]), "attention_sign": 1.0}
        runs["v4"][s] = {"points": [], "auroc": {**full(0.5), "learned": 0.9}, "attention_sign": 1.0}
        for arm in runs:
            runs[arm][s]["val_nll_full_view"] = 0.1
    return runs


def aa_runs(seeds, noise, waitk_shift=0.0):
    """V1 on the A/A seeds (100 + each seed): its own draws of the same wait-k curve (`waitk_shift` above)."""
    out = {}
    for s in seeds:
        rng = np.random.default_rng(100 + s)
        out[100 + s] = {"points": pts("waitk", WAITK_AL + rng.normal(0, noise, 4), WAITK_Q + waitk_shift + rng.normal(0, noise, 4)),
                        "auroc": {"entropy": 0.5 + rng.normal(0, noise)}}
    return out


def verdicts_of(runs, keep=0.95, aa=None):
    from repro.report.verdicts import evaluate_claims

    seeds = sorted(runs["v0"])
    aa = aa if aa is not None else aa_runs(seeds, 0.005)
    m = effects.decide({t: {"metric": "bleu", "runs": runs, "aa": aa} for t in ("synthmt", "synthqa")}, keep)
    return m, {c["id"]: c for c in evaluate_claims(rc.load_paper("proactivellm")["claims"], m)}


def test_null_curves_and_aurocs_do_not_reproduce():
    # heads on the wait-k curve, the three arms' AUROC equal: only noise between seeds
    m, v = verdicts_of(constructed_runs(range(5), head_shift=0.0, noise=0.02))
    for claim in ("A1", "A2", "A3"):
        assert v[claim]["verdict"] in ("not reproduced", "inconclusive"), (claim, v[claim])
    assert m["a2"]["synthmt"]["v3_minus_v2"]["n"] == 5


def test_clear_effects_reproduce():
    m, v = verdicts_of(constructed_runs(range(3), head_shift=0.1, noise=0.005, entropy=(0.6, 0.7, 0.8)))
    assert {c: v[c]["verdict"] for c in v} == {"A1": "reproduced", "A2": "reproduced", "A3": "reproduced"}
    a1 = m["a1"]["synthmt"]
    assert a1["branch_a_defined"] and a1["effect"]["head"] == "entropy" and a1["effect"]["branch"] == "a"
    assert a1["effect"]["value"] > 0 and a1["effect"]["n"] == 3
    assert m["a2"]["synthqa"]["v3_minus_v2"]["value"] == pytest.approx(0.1, abs=0.02)
    assert a1["diagnosis"]["v3"]["read_all"]["value"] == pytest.approx(0.95)
    assert a1["diagnosis"]["v0"]["by_position"] == pytest.approx([0.95] * 4)


def test_a1_needs_both_fixed_schedules():
    # above the wait-k curve but below the fixed-chunk curve: the smaller gain decides, and it is negative
    m, v = verdicts_of(constructed_runs(range(3), head_shift=0.1, noise=0.005, chunk_shift=0.2))
    a1 = m["a1"]["synthmt"]
    assert a1["per_baseline"]["entropy.b.waitk"]["ci"][0] > 0 and a1["per_baseline"]["entropy.b.chunk"]["ci"][1] < 0
    assert a1["candidates"]["entropy"]["b"]["value"] == pytest.approx(a1["per_baseline"]["entropy.b.chunk"]["value"])
    assert v["A1"]["verdict"] == "not reproduced"


def test_a3_needs_every_head_and_has_no_tolerance():
    # entropy and max-prob clearly above, attention a little below everywhere: A3 fails on attention
    m, v = verdicts_of(constructed_runs(range(3), head_shift=0.1, noise=0.002, attention_shift=-0.01))
    rows = {c["metric"]: c["verdict"] for c in v["A3"]["checks"]}
    assert rows["a3.synthmt.entropy"] == "reproduced" and rows["a3.synthmt.attention"] == "not reproduced"
    assert v["A3"]["verdict"] == "not reproduced"
    assert m["a3"]["synthmt"]["attention"]["ci"][1] < 0


def test_a3_checks_every_shared_point():
    # above the wait-k curve at two of three head points, clearly below at the middle one (AL ~5)
    m, v = verdicts_of(constructed_runs(range(3), head_shift=0.1, noise=0.002, dip=(1, -0.05)))
    e = m["a3"]["synthmt"]["entropy"]
    assert v["A3"]["verdict"] == "not reproduced" and e["ci"][1] < 0 and e["al"] == pytest.approx(5, abs=0.1)
    assert e["points"] >= 5 and 1 <= e["points_below"] < e["points"]
    assert e["n"] == 3  # an interval over the seeds at that point

def test_a1_branch_a_is_undefined_below_keep_and_another_head_may_decide():
    # V3's read-all quality 0.88 of V0's 0.95 (< 0.95, but >= 0.9: the regime holds): (a) is undefined,
    # (b) decides, and the pick pays for 2 candidates, not 4
    m, v = verdicts_of(constructed_runs(range(3), head_shift=0.1, noise=0.005, v3_read_all=0.88))
    a1 = m["a1"]["synthmt"]
    assert not a1["branch_a_defined"] and a1["read_all_ratio"]["value"] == pytest.approx(0.88 / 0.95)
    assert a1["effect"]["candidates"] == 2 and v["A1"]["regime"] == "met"
    assert a1["candidates"]["entropy"]["a"]["value"] is None and a1["effect"]["branch"] == "b"
    assert "branch (b)" in a1["effect"]["unit"] and v["A1"]["verdict"] == "reproduced"
    # the entropy head below the curve, the attention head above it: "entropy (or attention)"
    m, v = verdicts_of(constructed_runs(range(3), head_shift=-0.1, noise=0.005, attention_shift=0.1))
    assert m["a1"]["synthmt"]["effect"]["head"] == "attention" and v["A1"]["verdict"] == "reproduced"
    assert m["a1"]["synthmt"]["candidates"]["entropy"]["b"]["ci"][1] < 0


def test_a1_pays_for_picking_among_its_candidates():
    # issue 30: a candidate whose 95% interval clears 0 but whose 1 - 0.05/4 interval does not: the best
    # of four chances must not pass as if it had been the only one
    gain = iv.mean_ci([0.010, 0.025, 0.002, 0.018, 0.012])
    assert gain["ci"][0] > 0 and iv.t_bounds(gain["value"], gain["se"], gain["df"], 1 - 0.05 / 4)[0] < 0
    worse = iv.mean_ci([-0.01, -0.02, 0.0, -0.015, -0.005])
    e = effects.choose_a1({"entropy": {"a": gain, "b": worse}, "attention": {"a": worse, "b": worse}})
    assert e["candidates"] == 4 and e["head"] == "entropy" and e["branch"] == "a"
    assert e["ci"][0] < 0 < e["ci_unadjusted"][0]
    assert effects._verdict(e) == "inconclusive"
    # an undefined branch is no chance: two candidates tried, the interval at 1 - 0.05/2
    undefined = iv.unmeasured("branch (a) undefined")
    two = effects.choose_a1({"entropy": {"a": undefined, "b": gain}, "attention": {"a": undefined, "b": worse}})
    assert two["candidates"] == 2 and two["ci"][0] == pytest.approx(
        iv.t_bounds(gain["value"], gain["se"], gain["df"], 1 - 0.05 / 2)[0])
    # Holm's levels over the claim's checks multiply the candidates: level m is 1 - 0.05 / (m k)
    assert e["ci_levels"][1][0] == pytest.approx(iv.t_bounds(gain["value"], gain["se"], gain["df"], 1 - 0.05 / 8)[0])


def test_a3_is_one_simultaneous_statement_over_its_points():
    # issue 30: one point of eight a little below the curve. Its own 95% interval lies below 0 (the
    # old "worst of k separate intervals" said not reproduced); over eight points that is within what
    # chance gives one of them, so the simultaneous band holds 0: undecided
    al, q = np.arange(1.0, 9.0), 0.2 * np.arange(8)
    dips = [-0.015, -0.005, 0.0, 0.005, 0.015]
    pairs = []
    for d in dips:
        gaps = np.full(8, 0.1)
        gaps[3] = -0.02 + d
        pairs.append((effects.Curve(pts("h", al, q + gaps)), effects.Curve(pts("w", al, q))))
    x, g = effects.shared_gaps(pairs)
    j = int(np.argmin(g.mean(0)))
    assert iv.mean_ci(g[:, j])["ci"][1] < 0  # that point alone: below
    e = effects.on_or_above(pairs, list(range(5)))
    assert e["al"] == pytest.approx(4.0) and e["points"] >= 8 and e["points_below"] == 1
    assert e["ci"][0] < 0 < e["ci"][1] and effects._verdict(e, ">=") == "inconclusive"
    # every point well above: reproduced; the same point far below: not reproduced
    above = [(effects.Curve(pts("h", al, q + 0.1 + d)), effects.Curve(pts("w", al, q))) for d in dips]
    assert effects._verdict(effects.on_or_above(above, list(range(5))), ">=") == "reproduced"
    far = [(effects.Curve(pts("h", al, q + np.where(np.arange(8) == 3, -0.1 + d, 0.1))), effects.Curve(pts("w", al, q)))
           for d in dips]
    assert effects._verdict(effects.on_or_above(far, list(range(5))), ">=") == "not reproduced"


def test_a_failed_regime_is_inconclusive_whatever_the_checks_say():
    # clear effects, but V0 cannot do the task read-all: nothing the curves say is about the policy
    m, v = verdicts_of(constructed_runs(range(3), head_shift=0.1, noise=0.005, entropy=(0.6, 0.7, 0.8),
                                        v0_read_all=0.5, v3_read_all=0.5))
    for c in ("A1", "A2", "A3"):
        assert v[c]["checks_verdict"] == "reproduced" and v[c]["regime"] == "not reached"
        assert v[c]["verdict"] == "inconclusive" and "regime not reached" in v[c]["reason"]
    # heads whose tau sweep barely moves AL (< one source word): they do not decide when
    m, v = verdicts_of(constructed_runs(range(3), head_shift=0.1, noise=0.005, entropy=(0.6, 0.7, 0.8),
                                        head_al=(5.0, 5.3, 5.6)))
    assert m["regime"]["synthmt"]["span_entropy"]["value"] < 1
    assert v["A1"]["verdict"] == v["A3"]["verdict"] == "inconclusive" and v["A2"]["verdict"] == "reproduced"


def test_a_failed_seed_aa_makes_the_curve_claims_inconclusive():
    runs = constructed_runs(range(5), head_shift=0.1, noise=0.005, entropy=(0.6, 0.7, 0.8))
    m, v = verdicts_of(runs)
    assert all(c["passed"] for c in m["controls"].values()) and v["A1"]["verdict"] == "reproduced"
    # V1 on the A/A seeds 0.1 above V1 on the main seeds: the curves' seed noise is not what it seems
    m, v = verdicts_of(runs, aa=aa_runs(range(5), 0.005, waitk_shift=0.1))
    assert not m["controls"]["seed_aa_synthmt"]["passed"] and m["controls"]["seed_aa_auroc_synthmt"]["passed"]
    assert v["A1"]["verdict"] == v["A3"]["verdict"] == "inconclusive" and "control failed" in v["A1"]["reason"]
    assert v["A2"]["verdict"] == "reproduced"
    with pytest.raises(ValueError, match="disjoint"):
        effects.seed_controls(runs, {s: runs["v1"][s] for s in range(5)}, list(range(5)))


def test_mini_runs_five_seeds_and_a_disjoint_aa_set():
    params = rc.load_paper("proactivellm")
    assert len(params["mini"]["seeds"]) >= 5
    for profile in ("smoke", "mini", "paper"):
        sec = params[profile]
        assert len(sec["aa_seeds"]) == len(sec["seeds"]) and not set(sec["aa_seeds"]) & set(sec["seeds"])
    claims = {c["id"]: c for c in params["claims"]}
    assert all("regime" in c for c in claims.values())
    assert claims["A2"]["controls"] == ["seed_aa_auroc_synthmt", "seed_aa_auroc_synthqa"]
    assert "Bonferroni" in claims["A1"]["deviation"]
    # mini leaves V4 out (no claim reads it): the claims are decided without it
    assert "v4" not in params["mini"]["arms"] and "v4" in params["paper"]["arms"]
    runs = constructed_runs(range(3), head_shift=0.1, noise=0.005, entropy=(0.6, 0.7, 0.8))
    del runs["v4"]
    m, v = verdicts_of(runs)
    assert m["a2"]["synthmt"]["v4_minus_v3"] is None and v["A1"]["verdict"] == "reproduced"
    assert "v4" not in effects.report_tables(m, {t: {"metric": "bleu", "runs": runs, "position_bins": [0.5, 0.7, 0.9]}
                                                 for t in ("synthmt", "synthqa")}, "").split("### A2")[1].split("###")[0]


def test_resampled_auroc_matches_sklearn_and_counts_repeats():
    from sklearn.metrics import roc_auc_score

    from repro.papers.proactivellm._metrics import auroc, resampled_auroc

    rng = np.random.default_rng(0)
    scores, labels = np.round(rng.normal(size=60), 1), rng.integers(0, 2, 60)  # rounded: ties
    items = rng.integers(0, 8, 60)
    counts = rng.integers(0, 3, 8)
    got = resampled_auroc(scores, labels, items, np.stack([np.ones(8), counts]))
    assert got[0] == pytest.approx(roc_auc_score(labels, scores)) and auroc(scores, labels, items) == pytest.approx(got[0])
    rep = np.repeat(np.arange(60), counts[items])  # every state of item i, counts[i] times
    assert got[1] == pytest.approx(roc_auc_score(labels[rep], scores[rep]))
    assert auroc(scores, np.ones(60), items) is None


def test_item_quality_statistics_sum_to_corpus_bleu():
    import sacrebleu

    from repro.papers.proactivellm._metrics import from_sums, item_stats

    hyps, refs = ["n1 a2 v3 n4 .", "n2 u1", "", "n5 . n1"], ["n1 a2 v3 n4 .", "n2 u1 n3 .", "n0 v1 .", "n5 . n1 a0"]
    stats = item_stats("bleu", hyps, refs)
    assert from_sums("bleu", stats.sum(0), 4)[0] == pytest.approx(sacrebleu.corpus_bleu(hyps, [refs], force=True).score / 100)
    assert from_sums("accuracy", item_stats("accuracy", hyps, refs).sum(0), 4)[0] == 0.25


def test_item_intervals_resample_items_with_seeds_fixed():
    """Items that are all alike leave nothing to resample: the item interval is the point value; items
    that differ give an interval around it."""
    runs = constructed_runs(range(2), head_shift=0.1, noise=0.005, entropy=(0.6, 0.7, 0.8))
    n = 6

    def arrays(m, spread):
        rng = np.random.default_rng(1)
        al = np.array([[p["al"]] * n for p in m["points"]]).reshape(len(m["points"]), n)
        correct = np.array([[p["quality"]] * n for p in m["points"]]).reshape(len(m["points"]), n)
        if spread:  # the same means, items differ (V3's only: its curve moves against wait-k's)
            al = al + np.tile([-1.0, 1.0], n // 2)
        labels = np.tile([0, 1], 3 * n)
        return {"point_al": al, "point_quality": correct[..., None], "state_item": np.repeat(np.arange(n), 6),
                "state_label": labels, "state_entropy": labels + rng.normal(0, 0.01, labels.size)}

    tasks_m = effects.decide({"t": {"metric": "accuracy", "runs": runs}}, 0.95)
    flat = effects.item_intervals(runs, {a: {s: arrays(m, False) for s, m in r.items()} for a, r in runs.items()},
                                  "accuracy", resamples=50)
    effects.attach_item_intervals(tasks_m, "t", flat)
    e = tasks_m["a3"]["t"]["worst_per_seed"]["entropy"]
    assert e["ci_items"] == pytest.approx([e["value"], e["value"]])
    assert tasks_m["a1"]["t"]["effect"]["ci_items"] == pytest.approx([tasks_m["a1"]["t"]["effect"]["value"]] * 2)
    wide = effects.item_intervals(runs, {a: {s: arrays(m, a == "v3") for s, m in r.items()} for a, r in runs.items()},
                                  "accuracy", resamples=200)
    lo, hi = wide["a1.entropy.b"]
    assert lo < tasks_m["a1"]["t"]["candidates"]["entropy"]["b"]["value"] < hi and hi - lo > 0.01


# --- the paper profile's code path ----------------------------------------------------------------

@pytest.fixture
def paper_setup(tmp_path):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from conftest import save_bpe_tokenizer

    rng = random.Random(0)
    files, texts = {}, []
    for task, kind in (("mt", "synthmt"), ("qa", "synthqa")):
        p = {"kind": kind, "nouns": 6, "adjectives": 3, "verbs": 4, "clauses": [1, 2], "adjective_prob": 0.4,
             "negation_prob": 0.5, "categories": 3, "members": 4, "facts": [2, 3]}
        lex = synth.lexicon(p, 0)
        for split in ("train", "valid", "test"):
            rows = [synth.synthmt_example(rng, p, lex) if kind == "synthmt" else synth.synthqa_example(rng, p)
                    for _ in range(12)]
            # hub-style columns: text for source/target, a list for the oracle
            lines = [json.dumps({"src": " ".join(r["source"]), "tgt": " ".join(r["target"]), "need": r["oracle"]})
                     for r in rows]
            files[(task, split)] = tmp_path / f"{task}_{split}.jsonl"
            files[(task, split)].write_text("\n".join(lines))
            texts += [" ".join(r["source"] + r["target"]) for r in rows]
    vocab = save_bpe_tokenizer(texts, tmp_path / "tok", eos_token="<eos>", extra_special=("<sep>",))
    torch.manual_seed(0)
    Qwen2ForCausalLM(Qwen2Config(vocab_size=vocab, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                 num_key_value_heads=2, intermediate_size=64,
                                 max_position_embeddings=256)).save_pretrained(tmp_path / "ckpt")
    params = copy.deepcopy(rc.load_paper("proactivellm"))
    sec = params["paper"]
    sec["data"]["tokenizer"], sec["data"]["sep_token"] = str(tmp_path / "tok"), "<sep>"
    for name, task in (("synthmt", "mt"), ("synthqa", "qa")):
        sec["data"][name].update(load={"path": "json", "data_files": {
            s: str(files[(task, s)]) for s in ("train", "valid", "test")}},
            splits={"train": "train", "validation": "valid", "test": "test"},
            columns={"source": "src", "target": "tgt", "oracle": "need"})
    sec["tasks"]["synthmt"]["max_len"], sec["tasks"]["synthqa"]["max_len"] = 24, 4
    sec["model"]["pretrained"] = str(tmp_path / "ckpt")
    sec["seeds"], sec["aa_seeds"] = [0, 1], [100, 101]
    sec["train"].update(steps=2, batch_size=4)
    sec["evaluate"].update(tau_quantiles=[0.3, 0.7], waitk=[1, 3], chunks=[1, 3], calibration_examples=6, test_examples=6,
                           auroc_examples=6, batch_size=4)
    path = tmp_path / "proactivellm.yaml"
    path.write_text(yaml.safe_dump(params))
    return tmp_path, path


def test_paper_profile_chain_on_local_checkpoint(paper_setup):
    from repro.papers.proactivellm import analysis, data, evaluate, pretrain, train

    tmp, path = paper_setup
    r = tmp / "results"
    arms, seeds = ("v0", "v1", "v2", "v3", "v4"), (0, 1)
    inputs = []
    for task in ("synthmt", "synthqa"):
        d = run_stage("proactivellm", data, path, r / "data" / task, ["data"], wildcards=[("task", task)])
        assert d["train_rows"] == d["test_rows"] == 12 and "vocab_size" not in d  # the hub tokenizer
        b = run_stage("proactivellm", pretrain, path, r / "pretrain" / task, ["tasks", "model", "streaming", "pretrain"],
                      [("data", r / "data" / task)], [("task", task)])
        assert b["steps"] == 0  # the hub model is the backbone as it is
        for seed in seeds:
            for arm in arms:
                out = r / "train" / task / arm / f"seed{seed}"
                m = run_stage("proactivellm", train, path, out, ["tasks", "model", "streaming", "arms", "train"],
                              [("data", r / "data" / task), ("backbone", r / "pretrain" / task)],
                              (("task", task), ("arm", arm), ("seed", seed)))
                assert m["arm"] == arm and m["seed"] == seed and m["steps"] == 2 and m["val_nll_full_view"] > 0
            ev_out = r / "evaluate" / task / f"seed{seed}"
            ev = run_stage("proactivellm", evaluate, path, ev_out, ["tasks", "streaming", "evaluate"],
                           [("data", r / "data" / task), ("backbone", r / "pretrain" / task),
                            *((f"train_{arm}", r / "train" / task / arm / f"seed{seed}") for arm in arms)],
                           (("task", task), ("seed", seed)))
            assert ev["seed"] == seed and set(ev["arms"]) == set(arms)
            assert 0 <= ev["backbone"]["quality"] <= 1 and len(ev["backbone"]["by_position"]) == 4
            for arm in arms:
                assert ev["arms"][arm]["attention_sign"] in (1.0, -1.0)
                with np.load(ev_out / arm / "items.npz") as z:
                    points = ev["arms"][arm]["points"]
                    assert z["point_al"].shape == (len(points), 6) and len(z["state_item"]) == ev["arms"][arm]["states"]
            inputs.append((f"evaluate_{task}_seed{seed}", ev_out))
        for seed in (100, 101):  # the seed A/A: V1 alone on disjoint seeds, evaluated alone
            out = r / "train" / task / "v1" / f"seed{seed}"
            run_stage("proactivellm", train, path, out, ["tasks", "model", "streaming", "arms", "train"],
                      [("data", r / "data" / task), ("backbone", r / "pretrain" / task)],
                      (("task", task), ("arm", "v1"), ("seed", seed)))
            ev_out = r / "evaluate" / task / f"seed{seed}"
            ev = run_stage("proactivellm", evaluate, path, ev_out, ["tasks", "streaming", "evaluate"],
                           [("data", r / "data" / task), ("backbone", r / "pretrain" / task), ("train_v1", out)],
                           (("task", task), ("seed", seed)))
            assert set(ev["arms"]) == {"v1"}
            inputs.append((f"evaluate_{task}_seed{seed}", ev_out))
        saved = json.loads((r / "train" / task / "v4" / "seed0" / "model" / "config.json").read_text())
        assert saved["model_type"] == "qwen2" and saved["dtype"] == "bfloat16"
        assert (r / "train" / task / "v4" / "seed0" / "head" / "model.safetensors").exists()
        v4 = json.loads((r / "evaluate" / task / "seed1" / "metrics.json").read_text())["metrics"]["arms"]["v4"]
        assert "learned" in v4["auroc"]  # V4 with its oracle-trained head
        v3 = json.loads((r / "evaluate" / task / "seed1" / "metrics.json").read_text())["metrics"]["arms"]["v3"]
        assert {p["policy"] for p in v3["points"]} == {"read_all", "waitk", "chunk", "entropy", "maxprob", "attention",
                                                       "oracle"}
        assert all("al_ref" in p for p in v3["points"])
    m = run_stage("proactivellm", analysis, path, r / "analysis", ["analysis", "aa_seeds", "aa_arm"], inputs)
    assert set(m["a1"]) == {"synthmt", "synthqa"}
    assert set(m["controls"]) == {"seed_aa_synthmt", "seed_aa_synthqa", "seed_aa_auroc_synthmt", "seed_aa_auroc_synthqa"}
    assert m["controls"]["seed_aa_synthmt"]["effect"]["n"] in (0, 2)
    assert m["a2"]["synthmt"]["v3_minus_v2"]["n"] in (0, 2)  # two seeds (0: an AUROC without both labels)
    assert (r / "analysis" / "latency_quality_synthmt.png").stat().st_size > 1000
    tables = (r / "analysis" / "tables.md").read_text()
    assert "AUROC" in tables and "Decided by" in tables and "CI items" in tables and "Read-all diagnosis" in tables
    assert "amended design" in tables
