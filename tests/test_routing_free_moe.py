"""Routing-Free MoE: the layer's activation rule, balancing losses, adaptive lambda, the top-k baseline,
claim decisions on constructed numbers, and the `paper` profile's code path on local files."""
import copy
import json
import math
import zlib

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from scipy import stats

from conftest import run_stage

from repro.core import config as rc
from repro.papers.routing_free_moe import _arms as arms, effects, method
from repro.papers.routing_free_moe.method import AdaptiveLambda, RoutingFreeMoE, TopKMoE
from repro.report import intervals
from repro.report.verdicts import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED, evaluate_claims

TINY = {"arch": "llama", "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
        "num_key_value_heads": 4, "intermediate_size": 64, "max_position_embeddings": 64}
RF = {"kind": "routing_free", "experts": 6, "expert_size": 8, "rank": 8, "threshold": 0.2,
      "density_target": 0.25, "init_density": None, "lambda0": 1e-3, "eta": 0.2, "mu": 0.5, "lr": 0.003}
TOPK = {"kind": "topk", "experts": 4, "k": 2, "expert_size": 16, "aux_coef": 0.01, "lr": 0.003}


def constructed_layer() -> RoutingFreeMoE:
    """hidden 4, 3 experts, rank 2: expert e's gate reads coordinate e, so ||A_e x|| = |x_e|."""
    layer = RoutingFreeMoE(hidden=4, experts=3, expert_size=5, rank=2, threshold=0.2)
    with torch.no_grad():
        layer.gate_a.zero_()
        for e in range(3):
            layer.gate_a[e, 0, e] = 1.0
    return layer


def test_layer_has_no_router_softmax_or_topk(monkeypatch):
    layer = RoutingFreeMoE(hidden=16, experts=4, expert_size=8, rank=4, threshold=0.2)
    names = {n for n, _ in layer.named_parameters()}
    assert names == {"gate_a", "gate_b", "up", "down", "scale", "bias"}  # per-expert only, no router
    assert not any(isinstance(m, torch.nn.Linear) for m in layer.modules())

    def forbidden(*a, **k):
        raise AssertionError("softmax/top-k called in the routing-free path")

    for obj, name in ((torch, "softmax"), (torch, "topk"), (torch.Tensor, "softmax"), (torch.Tensor, "topk"),
                      (F, "softmax"), (torch, "sort"), (torch.Tensor, "sort")):
        monkeypatch.setattr(obj, name, forbidden)
    layer(torch.randn(2, 5, 16)).sum().backward()


def test_expert_is_active_exactly_when_its_score_clears_theta():
    layer = constructed_layer()
    x = torch.tensor([[0.3, -0.1, 0.2, 0.7]])  # scores 0.3, 0.1, 0.2 -> active, inactive, active (>=)
    _, s = layer.scores(x)
    assert torch.allclose(s, torch.tensor([[0.3, 0.1, 0.2]]))
    out = layer(x)
    expected = sum(s[0, e] * (layer.down[e] @ (F.silu(layer.gate_b[e] @ (layer.gate_a[e] @ x[0]))
                                                * (layer.up[e] @ x[0]))) for e in (0, 2))
    assert torch.allclose(out[0], expected, atol=1e-6)
    with torch.no_grad():  # the inactive expert's weights do not matter, an active one's do
        layer.up[1].mul_(5)
        assert torch.equal(layer(x), out)
        layer.up[2].mul_(5)
        assert not torch.allclose(layer(x), out)
    with torch.no_grad():  # gamma_e and b_e move the score: s = gamma * ||A x|| - b
        layer.scale[1] = 3.0
        layer.bias[0] = 0.2
    _, s = layer.scores(x)
    assert torch.allclose(s, torch.tensor([[0.1, 0.3, 0.2]]))


def test_balancing_losses_count_active_experts_only():
    s = torch.tensor([[0.5, -0.3, 0.1], [0.3, 0.4, 0.0]], requires_grad=True)
    l_e, l_t, rho = method.balancing_losses(s, 0.2)
    # M = [[1,0,0],[1,1,0]]; P = s where active, else 0 (the sub-threshold 0.1 does not count):
    # per expert: mean M (1, .5, 0) x mean P (.4, .2, 0) -> mean (.4 + .1 + 0) / 3
    assert l_e.item() == pytest.approx((0.4 + 0.1 + 0.0) / 3)
    # per token: mean M (1/3, 2/3) x mean P (.5/3, .7/3) -> mean
    assert l_t.item() == pytest.approx((1 / 3 * 0.5 / 3 + 2 / 3 * 0.7 / 3) / 2)
    assert rho.item() == pytest.approx(0.5)
    (l_e + l_t).backward()
    # only active experts' scores are pushed down; inactive ones (positive or not) get no gradient
    assert (s.grad[s.detach() >= 0.2] > 0).all() and (s.grad[s.detach() < 0.2] == 0).all()
    assert torch.isfinite(s.grad).all()


def test_calibrated_start_is_at_the_target_density():
    torch.manual_seed(0)
    model = method.build_model(TINY, RF, vocab_size=64)
    aux = method.make_aux(model, RF)
    batch = torch.randint(0, 64, (8, 32))
    model(input_ids=batch)
    aux.loss()
    assert aux._rho > 0.8  # zero biases: (nearly) every expert active at init
    method.calibrate_biases(model, batch, 0.25)
    model(input_ids=batch)
    aux.loss()
    assert aux._rho == pytest.approx(0.25, abs=0.01)
    for layer in aux.layers:  # every expert of every layer, not just the mean (layer by layer)
        per_expert = (layer.last_scores >= layer.threshold).float().mean(0)
        assert torch.allclose(per_expert, torch.full_like(per_expert, 0.25), atol=1 / 256 + 1e-6)
    other = torch.randint(0, 64, (8, 32))  # near the target on unseen tokens too
    model(input_ids=other)
    aux.loss()
    assert 0.15 < aux._rho < 0.35


def test_thresholds_for_density_are_score_quantiles():
    scores = torch.linspace(0, 1, 1001).reshape(-1, 7 * 11)  # any shape: pooled over tokens and experts
    flat = scores.flatten()
    thetas = method.thresholds_for_density(scores, 0.8, [2.0, 1.0, 0.5])
    base = (flat >= 0.8).float().mean().item()
    assert thetas[1.0] == 0.8
    for f in (2.0, 0.5):
        assert (flat >= thetas[f]).float().mean().item() == pytest.approx(f * base, abs=2 / flat.numel())
    assert thetas[2.0] < 0.8 < thetas[0.5]
    with pytest.raises(ValueError, match="not a density"):
        method.thresholds_for_density(scores, 0.3, [2.0, 1.0])  # 2 x 0.7 > 1


def test_lambda_moves_up_when_too_dense_and_down_when_too_sparse():
    lam = AdaptiveLambda(1e-3, eta=0.2, target=0.25)
    assert lam.update(0.5) == pytest.approx(1.2e-3)
    assert lam.update(0.1) == pytest.approx(1e-3)
    assert lam.update(0.25) == pytest.approx(1e-3)
    lam.value = 0.95
    assert lam.update(0.9) == 1.0  # capped at 1


def test_loss_is_finite_with_every_expert_inactive():
    torch.manual_seed(0)
    model = method.build_model(TINY, RF, vocab_size=64)
    for layer in model.model.layers:
        with torch.no_grad():
            layer.mlp.bias.fill_(100.0)  # every score far below theta
    aux = method.make_aux(model, RF)
    ids = torch.randint(0, 64, (2, 16))
    loss = model(input_ids=ids, labels=ids).loss
    extra = aux.loss()
    assert aux._rho == 0.0 and extra.item() == 0.0
    (loss + extra).backward()
    assert math.isfinite(loss.item())
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    assert torch.equal(model.model.layers[0].mlp(torch.randn(2, 3, 32)), torch.zeros(2, 3, 32))


def test_topk_baseline_equals_dense_computation():
    torch.manual_seed(0)
    layer = TopKMoE(hidden=8, experts=4, expert_size=6, k=2)
    x = torch.randn(3, 5, 8)
    out = layer(x)
    probs = layer.router(x).softmax(-1)
    w, idx = probs.topk(2, -1)
    w = w / w.sum(-1, keepdim=True)
    ref = torch.zeros_like(x)
    for e in range(4):
        ye = (F.silu(x @ layer.gate[e].T) * (x @ layer.up[e].T)) @ layer.down[e].T
        ref += ye * (w * (idx == e)).sum(-1, keepdim=True)
    assert torch.allclose(out, ref, atol=1e-6)
    aux = method.TopKAux(torch.nn.ModuleList([layer]), 0.01)
    assert aux.loss().item() == pytest.approx(0.01, rel=0.5)  # E * sum f P ~ 1 when near balanced


def test_mini_arms_have_matched_active_parameters():
    sec = rc.load_paper("routing_free_moe")["mini"]
    d, i = sec["model"]["hidden_size"], sec["model"]["intermediate_size"]
    counts = [method.active_ffn_params(sec["arms"][a], d, i) for a in arms.main_arms(sec)]
    assert max(counts) / min(counts) < 1.05
    assert method.active_ffn_params(sec["arms"]["rf"], d, i) <= method.active_ffn_params(sec["arms"]["topk"], d, i)


def test_training_moves_lambda_and_checkpoints_round_trip(tmp_path):
    from repro.models.training import train_causal_lm

    def train():
        torch.manual_seed(0)
        model = method.build_model(TINY, RF, vocab_size=64)
        aux = method.make_aux(model, RF)
        batches = lambda s: torch.randint(0, 64, (4, 16), generator=torch.Generator().manual_seed(s))  # noqa: E731
        losses = train_causal_lm(model, batches, steps=5, lr=0.003, aux_loss=aux.loss, after_step=aux.after_step)
        return model, aux, losses

    model, aux, losses = train()
    assert len(aux.history["rho"]) == len(aux.history["lambda"]) == 5
    assert aux.history["rho"][0] > 0.25 and aux.history["lambda"][0] == pytest.approx(1.2e-3)  # all on at init
    assert train()[2] == losses  # same seed, same numbers
    method.save_model(model, RF, tmp_path / "m")
    loaded, arm = method.load_model(tmp_path / "m")
    ids = torch.randint(0, 64, (2, 16))
    with torch.no_grad():
        assert torch.equal(loaded(ids).logits, model(ids).logits)
    assert arm == RF


def test_arm_names_and_runs():
    sec = rc.load_paper("routing_free_moe")["mini"]
    assert arms.mu_arms(sec) == {0.0: "rf_mu0", 0.5: "rf", 1.0: "rf_mu100"}
    assert arms.arm_spec(sec["arms"], "rf_mu100")["mu"] == 1.0
    assert ("rf_mu0", 0) in arms.runs(sec) and ("rf", 1) in arms.runs(sec)
    seeds = {}
    for arm, seed in arms.runs(sec):
        seeds.setdefault(arm, set()).add(seed)
    # dense, which no claim reads, is left to the paper profile; top-k again on disjoint seeds (A/A)
    assert set(seeds) == {"topk", "rf", "rf_mu0", "rf_mu100", "topk_aa"}
    assert all(len(s) >= 5 for s in seeds.values())  # R2-R4 rest on seeds alone (spec, turn 3)
    assert not seeds["topk_aa"] & seeds["topk"] and arms.arm_spec(sec["arms"], "topk_aa") == sec["arms"]["topk"]
    assert ("dense", 0) in arms.runs(rc.load_paper("routing_free_moe")["paper"])
    with pytest.raises(ValueError, match="disjoint"):
        arms.runs({**sec, "aa_seeds": [4, 100]})


# ---------------------------------------------------------------- claim decisions on constructed numbers
CLAIMS = rc.load_paper("routing_free_moe")["claims"]
MINI_RF = rc.load_paper("routing_free_moe")["mini"]["arms"]["rf"]  # trained theta 0.2, rho* 0.25
MUS = {0.0: "rf_mu0", 0.5: "rf", 1.0: "rf_mu100"}
FACTORS = [2.0, 1.41, 1.0, 0.71, 0.5]  # the mini sweep's density factors
SEEDS = (0, 1, 2, 3, 4)
JITTER = (0.03, -0.03, 0.0, 0.015, -0.015)  # what differs between seeds: each seed's offset
AA_SEEDS = (100, 101, 102, 103, 104)  # the top-k A/A's disjoint seeds, with the same offsets in another order
ENTROPY = 3.0  # the validation text's unigram entropy: every constructed model (loss ~2) is below it
DIFFICULTY = np.random.default_rng(100).normal(0, 0.3, 32)  # each validation window's, shared by every model


def windows(level: float, seed: int, arm: str) -> list[float]:
    """Per-window losses of one model: the window's difficulty, the model's level, a little model noise."""
    noise = np.random.default_rng([seed, zlib.crc32(arm.encode())]).normal(0, 0.01, DIFFICULTY.size)
    return (2.0 + level + DIFFICULTY + noise).tolist()


def record(arm: str, seed: int, level: float, e_cv: float, t_cv: float, rho: float) -> dict:
    w = windows(level, seed, arm)
    return {"arm": arm, "seed": seed, "kind": "routing_free" if arm.startswith("rf") else arm,
            "val_loss": float(np.mean(w)), "window_loss": w, "expert_load_cv": e_cv, "token_compute_cv": t_cv,
            "dead_experts": 0, "experts_total": 48, "density": rho, "rho_final": rho, "rho_mean_train": rho,
            "lambda_final": 0.1, "active_ffn_params_per_layer": 1, "params_non_embedding": 1,
            "active_ffn_params_train": 1.0 + (rho - 0.25) if arm.startswith("rf") else 1.0}


def constructed(rf_gap=0.0, rho=0.25, cv_mu0=(0.5, 0.5), cv_mu1=(0.5, 0.5), sweep_curve=lambda t: 0.0,
                peak=0.45, sweep_density=lambda f: 0.25 * f, aa_gap=0.0):
    """Runs, theta sweep and validation curves of 5 seeds (and top-k on 5 A/A seeds). rf_gap:
    routing-free minus top-k loss; rho: every routing-free run's final density; peak: its density over
    the first 10 training steps; cv_mu*: (expert-load, token-compute) CV at each end of the mu sweep;
    sweep_curve(factor) / sweep_density(factor): the loss change and the validation density at the
    inference theta meant to put the density at `factor` times the trained one; aa_gap: top-k on the A/A
    seeds minus top-k."""
    runs, sweep, curves = {}, {}, {}
    for s, j in zip(SEEDS, JITTER):
        levels = {"dense": 0.1, "topk": 0.0, "rf": rf_gap + j, "rf_mu0": rf_gap, "rf_mu100": rf_gap}
        cvs = {"rf_mu0": np.add(cv_mu0, j), "rf_mu100": np.subtract(cv_mu1, j)}
        for arm, level in levels.items():
            e_cv, t_cv = cvs.get(arm, (0.5, 0.5))
            key = arms.run_key(arm, s)
            runs[key] = record(arm, s, level, float(e_cv), float(t_cv), rho + j / 3)
            curves[key] = {"val_curve": [[50, 2.3 + level], [100, 2.0 + level]], "rho": [peak] * 10 + [rho] * 90}
        sweep[arms.run_key("rf", s)] = {"trained_theta": 0.2, "sweep": {
            str(f): {"theta": 0.2 / f, "val_loss": 2.0 + levels["rf"] + sweep_curve(f), "density": sweep_density(f),
                     "window_loss": windows(levels["rf"] + sweep_curve(f), s, "rf")} for f in FACTORS}}
    for s, j in zip(AA_SEEDS, JITTER[::-1]):
        key = arms.run_key(arms.AA_ARM, s)
        runs[key] = record(arms.AA_ARM, s, aa_gap + j, 0.5, 0.5, rho)
        curves[key] = {"val_curve": [[50, 2.3], [100, 2.0]]}
    return runs, sweep, curves


def decided(entropy: float = ENTROPY, **kw) -> dict:
    runs, sweep, curves = constructed(**kw)
    return effects.decide(runs, sweep, MUS, MINI_RF, curves, entropy)


def verdicts(entropy: float = ENTROPY, **kw) -> dict:
    return {v["id"]: v["verdict"] for v in evaluate_claims(CLAIMS, decided(entropy, **kw))}


def v_shape(f: float) -> float:
    """Loss rising by 0.15 nats per halving or doubling of the density."""
    return 0.15 * abs(math.log2(f))


NOT_DECIDED_FOR = (NOT_REPRODUCED, INCONCLUSIVE)


def test_clear_effects_reproduce_every_claim():
    v = verdicts(rf_gap=-0.1, cv_mu0=(0.9, 0.2), cv_mu1=(0.3, 0.6), sweep_curve=v_shape)
    assert v == {"R1": REPRODUCED, "R2": REPRODUCED, "R3": REPRODUCED, "R4": REPRODUCED}


def test_r1_null_no_loss_gap():
    assert verdicts(rf_gap=0.0)["R1"] in NOT_DECIDED_FOR
    assert verdicts(rf_gap=+0.1)["R1"] == NOT_REPRODUCED


def test_r2_null_density_off_target():
    assert verdicts(rho=0.44)["R2"] == NOT_REPRODUCED
    assert verdicts(rho=0.30)["R2"] in NOT_DECIDED_FOR  # gaps 0.04-0.06 straddle 0.05


def test_r3_null_mu_changes_nothing():
    assert verdicts()["R3"] in NOT_DECIDED_FOR
    assert verdicts(cv_mu0=(0.3, 0.6), cv_mu1=(0.9, 0.2))["R3"] == NOT_REPRODUCED  # the other way round


def test_r4_null_flat_curve_is_not_reproduced():
    # inconclusive at 5 seeds: the seed spread the rise must exceed is itself estimated from 5 seeds
    assert verdicts(sweep_curve=lambda t: 0.0)["R4"] in NOT_DECIDED_FOR


def test_r4_rise_within_seed_spread_is_not_reproduced():
    spread = np.std(JITTER, ddof=1)  # 0.024: the seeds' spread of the loss at the trained theta
    assert verdicts(sweep_curve=lambda f: 0.02 * abs(math.log2(f)))["R4"] in NOT_DECIDED_FOR  # 0.02 < spread
    assert decided(sweep_curve=v_shape)["r4"]["rise_below_beyond_spread"]["value"] == pytest.approx(0.15 - spread)


def test_r4_one_sided_rise_is_not_reproduced():
    # fewer experts hurt, more experts do not: the loss must rise on both sides
    assert verdicts(sweep_curve=lambda f: v_shape(f) if f < 1 else 0.0)["R4"] in NOT_DECIDED_FOR


def test_r4_dip_is_not_monotone_and_a_jump_is_not_smooth():
    r4 = decided(sweep_curve=lambda f: {0.71: 0.2}.get(f, v_shape(f)))["r4"]  # 0.71 above 0.5
    assert r4["density_factors"] == FACTORS
    assert r4["thetas"][2] == pytest.approx(0.2)
    assert r4["min_step_away"]["value"] == pytest.approx(v_shape(0.5) - 0.2)  # -0.05: the loss falls back
    assert r4["min_step_away"]["ci"][1] < 0 and r4["rise_above_beyond_spread"]["ci"][0] > 0
    assert r4["max_step_rel"]["value"] == pytest.approx(0.2 / 2.0)  # trained -> 0.71, over the trained loss
    assert verdicts(sweep_curve=lambda f: v_shape(f) + (0.5 if f == 0.5 else 0))["R4"] == NOT_REPRODUCED


def test_steps_away_and_relative_steps():
    curve = np.array([2.1, 2.0, 2.3, 2.2])
    assert effects.steps_away(curve, 1).tolist() == pytest.approx([0.1, 0.3, -0.1])
    assert effects.min_step_away(curve, 1) == pytest.approx(-0.1)
    assert effects.max_step_rel(curve, 1) == pytest.approx(0.15)
    batch = np.stack([curve, curve + 1])  # vectorised over leading axes (the bootstrap's resamples)
    assert effects.min_step_away(batch, 1).tolist() == pytest.approx([-0.1, -0.1])


def test_r4_curve_statistics_use_the_jackknife_over_seeds():
    # the old percentile bootstrap over seeds is refused (it undercovers); the jackknife-t of the
    # seed-mean curve's smallest step: seeds whose curves differ give an interval around the estimate
    loss = np.array([[2.3, 2.1, 2.0, 2.2], [2.2, 2.1, 2.0, 2.4], [2.4, 2.2, 2.0, 2.1], [2.3, 2.0, 2.0, 2.3]])
    e = effects.of_mean_curve(loss, effects.min_step_away, 2)
    assert e["method"] == "jackknife-t" and e["n"] == 4 and e["unit"] == "seeds"
    assert e["value"] == pytest.approx(effects.min_step_away(loss.mean(0), 2))
    assert e["ci"][0] < e["value"] < e["ci"][1]
    with pytest.raises(ValueError, match="undercovers"):
        intervals.bootstrap(np.arange(4), "seeds", lambda idx: idx.mean(-1))


def test_r4_rises_are_student_t_over_seeds():
    r4 = decided(sweep_curve=v_shape)["r4"]
    rise = r4["rise_below"]  # every seed rises 0.15 exactly: a paired, zero-width Student-t interval
    assert (rise["method"], rise["unit"], rise["n"]) == ("Student-t", "seeds", 5)
    assert rise["ci"] == pytest.approx([0.15, 0.15])
    # rise minus the seed spread is one statistic of the seeds: its interval carries the spread's
    # uncertainty (a jackknife-t by hand), not the rise's zero width shifted by a spread taken as known
    beyond = r4["rise_below_beyond_spread"]
    loo = np.array([0.15 - np.std(np.delete(JITTER, i), ddof=1) for i in range(5)])
    se = math.sqrt(4 / 5 * ((loo - loo.mean()) ** 2).sum())
    half = stats.t.ppf(0.975, 4) * se
    assert (beyond["method"], beyond["n"]) == ("jackknife-t", 5) and half > 0.01
    assert beyond["ci"] == pytest.approx([0.15 - np.std(JITTER, ddof=1) - half, 0.15 - np.std(JITTER, ddof=1) + half])


def test_unigram_entropy_of_a_split(tmp_path):
    from repro.data.corpus import unigram_entropy

    np.save(tmp_path / "validation.npy", np.array([0, 0, 1, 1, 2, 2, 2, 2], dtype=np.int64))
    assert unigram_entropy(tmp_path) == pytest.approx(-(0.5 * math.log(0.25) + 0.5 * math.log(0.5)))


# ---------------------------------------------------------------- regimes and the seed-only A/A control
def clear(**kw) -> dict:
    """Every claim's clear effect (all reproduced when their regimes hold), with changes."""
    return {"rf_gap": -0.1, "cv_mu0": (0.9, 0.2), "cv_mu1": (0.3, 0.6), "sweep_curve": v_shape, **kw}


@pytest.mark.parametrize("claim, change", [
    ("R1", {"entropy": 1.5}),  # neither arm below the unigram entropy: nothing learned to compare
    ("R1", {"rho": 0.44}),  # routing-free spent 1.19x top-k's active compute
    ("R2", {"peak": 0.25}),  # the density never left rho*: the initialisation, not the balancing, held it
    ("R2", {"entropy": 1.5}),
    ("R3", {"rho": 0.44}),  # the ends of the mu sweep ran far from the target density
    ("R4", {"sweep_density": lambda f: 0.25}),  # the swept thetas did not move the density
    ("R4", {"sweep_density": lambda f: 0.25 * f ** 0.25}),  # moved it by 1.19x / 0.84x only
])
def test_a_failed_regime_makes_the_claim_inconclusive(claim, change):
    entropy = change.pop("entropy", ENTROPY)
    v = {c["id"]: c for c in evaluate_claims(CLAIMS, decided(entropy, **clear(**change)))}[claim]
    assert v["regime"] == "not reached" and v["verdict"] == INCONCLUSIVE
    assert v["reason"].startswith("regime not reached")
    assert verdicts(**clear())[claim] == REPRODUCED  # the same checks with the regime met


def test_seed_aa_control_passes_on_noise_and_fails_on_a_shift():
    m = decided(**clear())
    aa = m["controls"]["seed_aa"]
    assert aa["passed"] and aa["kind"] == "seed A/A" and aa["effect"]["n"] == 5
    assert aa["effect"]["value"] == pytest.approx(0.0, abs=0.01)
    # top-k on its A/A seeds 0.1 worse than on the main seeds: seed noise alone decides an effect,
    # so R1, which compares trained arms, is inconclusive
    shifted = decided(**clear(aa_gap=0.1))
    assert not shifted["controls"]["seed_aa"]["passed"]
    r1 = {c["id"]: c for c in evaluate_claims(CLAIMS, shifted)}["R1"]
    assert r1["verdict"] == INCONCLUSIVE and "control failed: seed_aa" in r1["reason"]
    assert r1["checks_verdict"] == REPRODUCED


def test_effects_are_paired_and_tables_render():
    runs, sweep, curves = constructed(rf_gap=-0.1, sweep_curve=v_shape)
    m = effects.decide(runs, sweep, MUS, MINI_RF, curves, ENTROPY)
    r1 = m["r1"]["rf_minus_topk_loss"]
    assert r1["value"] == pytest.approx(-0.1, abs=0.01)
    assert (r1["unit"], r1["n"], r1["n_items"]) == ("seeds x items", 5, 32)
    # the windows' shared difficulty (std 0.3) cancels in the pairing: the interval is the seeds' jitter
    assert r1["ci"][1] - r1["ci"][0] < 0.1
    assert m["r2"]["abs_gap"]["value"] == pytest.approx(0.006)
    assert m["r2"]["peak_departure"]["value"] == pytest.approx(0.45 - 0.25)
    assert m["r1"]["rf_over_topk_train_compute"]["samples"] == pytest.approx([1.01, 0.99, 1.0, 1.005, 0.995])
    assert m["r1"]["rf_minus_unigram"]["value"] == pytest.approx(
        np.mean([runs[arms.run_key("rf", s)]["val_loss"] for s in SEEDS]) - ENTROPY)
    assert m["r4"]["density_ratio_low_theta"]["value"] == pytest.approx(2.0)
    assert [c["density_so_far"] for c in m["r1"]["curve"]] == pytest.approx([0.29, 0.27])  # 10 steps at 0.45
    assert m["r3"]["expert_cv_mu0_minus_mu1"]["samples"] == pytest.approx([0.06, -0.06, 0.0, 0.03, -0.03])
    assert [c["step"] for c in m["r1"]["curve"]] == [50, 100]
    assert m["r1"]["curve"][-1]["value"] == pytest.approx(-0.1)
    method_text = effects.method_section(MINI_RF, FACTORS, {"excluded_count": 3, "rule": "r", "dedup_containment": 0.5})
    tables = effects.report_tables(m, runs, method_text)
    assert "| rf |" in tables and "| topk_aa |" in tables and "| 100 | -0.1000 |" in tables and "items only" in tables
    assert tables.startswith("## Method: the amended design") and "3 excluded" in tables
    assert "| 0.5 | 0.400 (0.400-0.400) |" in tables  # the sweep table: factor, theta


def test_undefined_cv_is_inconclusive_with_the_reason():
    runs, sweep, curves = constructed()
    runs["rf_mu0_s1"]["expert_load_cv"] = None
    m = effects.decide(runs, sweep, MUS, MINI_RF, curves, ENTROPY)
    assert m["r3"]["expert_cv_mu0_minus_mu1"]["value"] is None
    r3 = next(v for v in evaluate_claims(CLAIMS, m) if v["id"] == "R3")
    assert r3["checks"][0]["verdict"] == INCONCLUSIVE and "seed(s) [1]" in r3["checks"][0]["reason"]


def test_routing_stats_window_losses_match_the_models_loss():
    from repro.models.training import mean_loss

    torch.manual_seed(0)
    model = method.build_model(TINY, RF, vocab_size=64).eval()
    batches = [torch.randint(0, 64, (3, 16)) for _ in range(2)]
    stats = method.routing_stats(model, batches)
    assert len(stats["window_loss"]) == 6
    with torch.no_grad():
        ref = mean_loss(lambda b: model(input_ids=b, labels=b).loss, batches)
    assert stats["val_loss"] == pytest.approx(ref, rel=1e-5)


# ---------------------------------------------------------------- the `paper` profile's code path


def test_paper_profile_chain_on_local_files(tmp_path):
    """Hub names swapped for a local text file (load_dataset("text")), a local tokenizer and a tiny local
    checkpoint (save_pretrained) whose MLPs are replaced; same stages, accelerate, flash-attn fallback."""
    from transformers import LlamaForCausalLM

    from conftest import save_bpe_tokenizer, tiny_llama_config
    from repro.papers.routing_free_moe import analysis, data, evaluate, threshold, train

    text = "\n".join(f"def f{i}(x):\n    return x * {i} + {i % 7}" for i in range(300))
    (tmp_path / "train.txt").write_text(text)
    vocab = save_bpe_tokenizer([text], tmp_path / "tok")
    torch.manual_seed(0)
    LlamaForCausalLM(tiny_llama_config(vocab_size=vocab, num_hidden_layers=2)).save_pretrained(
        tmp_path / "ckpt")

    params = copy.deepcopy(rc.load_paper("routing_free_moe"))
    sec = params["paper"]
    # Same keys and code as the published setting (one-split corpus with a held-out slice, hub tokenizer,
    # bf16 + flash-attn request); only names point at local files and sizes shrink.
    load = {"path": "text", "data_files": {"train": str(tmp_path / "train.txt")}}
    sec["data"] = {"source": {"kind": "hub", "load": load, "train_split": "train", "holdout_fraction": 0.2},
                   "tokenizer": str(tmp_path / "tok")}
    sec["model"] = {"pretrained": str(tmp_path / "ckpt"), "dtype": "bfloat16",
                    "attn_implementation": "flash_attention_2"}
    sec["arms"]["topk"].update(experts=4, k=2, expert_size=16)
    # two steps cannot bring an all-active start to rho*, and the sweep needs density x 2 < 1: start there
    sec["arms"]["rf"].update(experts=4, expert_size=8, rank=8, init_density=0.25)
    sec["seeds"], sec["aa_seeds"] = [0], [100]
    sec["mu_sweep"] = {"values": [0.0, 1.0], "seeds": [0]}
    sec["train"].update(steps=2, batch_size=2, seq_len=16, warmup=1, val_every=1, val_windows=2)
    sec["evaluate"] = {"windows": 4, "seq_len": 16, "batch_size": 2}
    path = tmp_path / "routing_free_moe.yaml"
    path.write_text(yaml.safe_dump(params))

    r = tmp_path / "results"
    d = run_stage("routing_free_moe", data, path, r / "data", ["data"])
    assert d["vocab_size"] > 256 and d["validation_documents"] > 0  # BPE tokenizer, held-out slice
    runs = arms.runs(sec)
    for arm, seed in runs:
        t = run_stage("routing_free_moe", train, path, r / arm, ["model", "arms", "train"], [("data", r / "data")],
                      [("arm", arm), ("seed", seed)])
        assert t["steps"] == 2 and math.isfinite(t["val_loss_last"])
    assert json.loads((r / "rf" / "model" / "config.json").read_text())["dtype"] == "bfloat16"
    keys = [(arms.run_key(a, s), r / a) for a, s in runs]
    th = run_stage("routing_free_moe", threshold, path, r / "threshold", ["threshold", "evaluate"],
                   [("data", r / "data"), (arms.run_key("rf", 0), r / "rf")])
    assert set(th["runs"]["rf_s0"]["sweep"]) == {str(float(v)) for v in sec["threshold"]["density_factors"]}
    run_stage("routing_free_moe", evaluate, path, r / "evaluate", ["evaluate"], [("data", r / "data"), *keys])
    m = run_stage("routing_free_moe", analysis, path, r / "analysis", ["arms", "mu_sweep", "threshold"],
                  [("data", r / "data"), ("evaluate", r / "evaluate"), ("threshold", r / "threshold")])
    assert {"r1", "r2", "r3", "r4"} <= set(m)
    assert (r / "analysis" / "density.png").stat().st_size > 1000


@pytest.mark.parametrize("edit, key", [
    (lambda s: s["threshold"].update(density_factors=[2.0, 1.41, 0.5]), "density_factors"),  # no trained theta
    (lambda s: s["threshold"].update(density_factors=[1.0, 0.71, 0.5]), "density_factors"),  # one side only
    (lambda s: s["arms"]["rf"].update(init_density=1.5), "init_density"),
    (lambda s: s["arms"]["rf"].pop("init_density"), "init_density"),
])
def test_bad_sweep_and_start_params_are_refused(edit, key):
    params = copy.deepcopy(rc.load_paper("routing_free_moe"))
    edit(params["mini"])
    with pytest.raises(rc.ParamsError, match=key):
        rc.validate_paper(params, "routing_free_moe")
