"""Intervals on hand-checkable samples, verdicts at each boundary of a constructed interval, and the
rendered report/index (forest plots included)."""
import json

import numpy as np
import pytest

from repro.core import integrity
from repro.report import intervals as iv
from repro.report import render
from repro.report import verdicts as vd


# ------------------------------------------------------------------------------------- intervals
def test_constant_sample_gives_a_zero_width_interval():
    e = iv.mean_ci([0.3, 0.3, 0.3, 0.3])
    assert e["value"] == 0.3 and e["ci"] == [0.3, 0.3] and e["n"] == 4 and e["unit"] == "seeds"


def test_one_sample_has_no_interval():
    assert iv.mean_ci([1.0])["ci"] == [None, None]


def test_three_seeds_get_a_student_t_interval_wider_than_the_seeds():
    # mean 2, sd 1, se 1/sqrt(3), t_{2, 0.975} = 4.3027: by hand, 2 -+ 2.4841
    e = iv.mean_ci([1.0, 2.0, 3.0])
    assert e["value"] == 2.0 and e["ci"] == pytest.approx([-0.48414, 4.48414], abs=1e-4)
    assert e["method"] == "Student-t" and e["df"] == 2
    # Holm levels: 1 - 0.05/2 uses t_{2, 0.9875} = 6.2053
    assert iv.at_level(e, 2) == pytest.approx([2 - 6.2053 / 3 ** 0.5, 2 + 6.2053 / 3 ** 0.5], abs=1e-3)
    assert iv.at_level(e, 1) == e["ci"] and iv.at_level(iv.effect(1, 0, 2, 3, "seeds"), 2) is None


def test_welch_and_jackknife_by_hand():
    # a = [1, 2, 3] (var 1), b = [2, 4] (var 2): diff -1, se sqrt(1/3 + 1), Welch df 1.6^... by hand below
    e = iv.unpaired_diff([1.0, 2.0, 3.0], [2.0, 4.0])
    se = (1 / 3 + 2 / 2) ** 0.5
    df = se ** 4 / ((1 / 3) ** 2 / 2 + 1.0 ** 2 / 1)
    assert e["value"] == -1.0 and e["se"] == pytest.approx(se) and e["df"] == pytest.approx(df)
    # the jackknife of a mean is Student-t
    x = np.array([0.1, 0.4, 0.2, 0.9, 0.5])
    j = iv.jackknife(5, lambda idx: x[idx].mean())
    assert j["ci"] == pytest.approx(iv.mean_ci(x)["ci"])


def test_median_ratio_interval_is_an_order_statistic_interval():
    # 40 iid-looking ratios: the interval's ends are sample values around the median
    ratios = list(np.linspace(1.8, 2.2, 40)[np.random.default_rng(0).permutation(40)])
    e = iv.median_ratio(ratios)
    assert e["value"] == pytest.approx(2.0) and e["ci"][0] in ratios and e["ci"][1] in ratios
    assert e["ci"][0] < 2.0 < e["ci"][1] and e["unit"] == "pairs"
    # 40 pairs: n/2 -+ 1.96 sqrt(40)/2 = 20 -+ 6.2 -> the 14th and 27th order statistics (or wider)
    ranked = sorted(ratios)
    assert e["ci"][0] <= ranked[13] and e["ci"][1] >= ranked[26]


def test_against_aa_widens_by_the_controls_distance_from_one():
    e = iv.median_ratio(list(np.linspace(2.5, 2.8, 40)))
    aa = iv.effect(1.0, 0.976, 1.035, 40, "pairs", ci_levels=[[0.976, 1.035], [0.97, 1.04]])
    w = iv.against_aa(e, aa)
    assert w["aa_factor"] == pytest.approx(1.035)
    assert w["ci"] == pytest.approx([e["ci"][0] / 1.035, e["ci"][1] * 1.035])
    assert w["ci_unwidened"] == e["ci"] and w["ci_levels"][1][0] == pytest.approx(e["ci_levels"][1][0] / 1.04)
    # a speedup of 2.6 against a 1.4 threshold survives a 3.5% noisy control (the old gate voided it)
    assert vd.decide_check(check(op=">=", value=1.4), {"m": w})["verdict"] == vd.REPRODUCED
    # near the threshold the widening decides, and the reason says so
    near = iv.against_aa(iv.effect(1.43, 1.41, 1.45, 40, "pairs"), aa)
    row = vd.decide_check(check(op=">=", value=1.4), {"m": near})
    assert row["verdict"] == vd.INCONCLUSIVE and "A/A control shows" in row["reason"]
    assert iv.against_aa(e, iv.effect(1.0, None, None, 1, "pairs"))["unstable"]


def test_pairing_removes_what_arms_share():
    rng = np.random.default_rng(0)
    a = rng.normal(0, 1, 20)
    b = a + 0.5  # a shifted copy: the same seeds/items, shifted
    paired = iv.paired_diff(b, a)
    assert paired["ci"] == pytest.approx([0.5, 0.5])  # zero width: the shared noise is gone
    lo, hi = iv.mean_ci(a)["ci"]
    assert hi - lo > 0.5  # each arm on its own is far less certain


def test_interval_narrows_with_more_samples():
    rng = np.random.default_rng(1)
    width = lambda n: np.diff(iv.mean_ci(rng.normal(0, 1, n))["ci"])[0]  # noqa: E731
    assert width(400) < width(25) / 2


def test_hierarchical_separates_seed_noise_from_item_noise():
    # items identical within each seed: no item noise, only seed-to-seed spread
    e = iv.hierarchical([[0.2] * 50, [0.4] * 50, [0.6] * 50])
    assert e["value"] == pytest.approx(0.4) and e["ci_items"] == pytest.approx([0.4, 0.4])
    assert e["ci"][0] < 0.35 and e["ci"][1] > 0.45 and e["n"] == 3 and e["n_items"] == 50
    # seed means 0.2, 0.4, 0.6 and no item part: exactly Student-t over the seed means
    assert e["ci"] == pytest.approx(iv.mean_ci([0.2, 0.4, 0.6])["ci"])
    # one seed: item noise only, no seed interval
    one = iv.hierarchical([[0, 1] * 50])
    assert one["ci"] == [None, None] and one["ci_items"][0] < 0.5 < one["ci_items"][1]


def test_hierarchical_ratio_is_the_ratio_of_seed_means():
    # a is b scaled by 0.9 item by item: the ratio is 0.9 with no spread
    b = {0: [0.4, 0.6] * 20, 1: [0.3, 0.7] * 20}
    a = {s: [0.9 * x for x in items] for s, items in b.items()}
    e = iv.hierarchical_ratio(a, b, "b is zero")
    assert e["value"] == pytest.approx(0.9) and e["ci"] == pytest.approx([0.9, 0.9])
    noisy = iv.hierarchical_ratio({0: [1, 0] * 20, 1: [1, 1, 0, 1] * 10}, {0: [1, 1] * 20, 1: [1] * 40}, "b is zero")
    assert noisy["value"] == pytest.approx((0.5 + 0.75) / 2) and noisy["ci"][0] < noisy["value"] < noisy["ci"][1]
    assert iv.hierarchical_ratio({0: [1]}, {0: [0]}, "b is zero")["reason"] == "b is zero"
    with pytest.raises(ValueError, match="not paired"):
        iv.hierarchical_diff({0: [1, 2]}, {0: [1, 2, 3]})


def test_shared_items_count_once_not_divided_by_the_seeds():
    # every seed carries the same item effects (+-1 alternating) and no seed noise: the interval is the
    # items' own, not a third of it (what resampling items independently per seed gave)
    items = np.tile([1.0, -1.0], 50) + np.linspace(-0.2, 0.2, 100)
    e = iv.hierarchical([items + 0.01 * s for s in range(3)])
    one = iv.mean_ci(items, "items")
    assert e["ci"][1] - e["ci"][0] == pytest.approx(one["ci"][1] - one["ci"][0], rel=0.05)


def test_clusters_are_the_resampled_unit():
    # 10 conversations of 5 QAs; QAs of a conversation identical: 10 units, not 50
    conv = np.repeat(np.arange(10), 5)
    per_conv = np.linspace(0, 1, 10)
    y = [per_conv[conv] + 0.001 * s for s in range(3)]
    flat, clustered = iv.hierarchical(y), iv.hierarchical(y, clusters=conv)
    assert clustered["value"] == pytest.approx(flat["value"]) and clustered["n_clusters"] == 10
    assert clustered["ci"][1] - clustered["ci"][0] > 2 * (flat["ci"][1] - flat["ci"][0])
    with pytest.raises(ValueError, match="cluster labels"):
        iv.hierarchical(y, clusters=conv[:-1])


def test_min_over_points_is_an_intersection_union_test():
    # three points, all clearly above 0: reproduced; one clearly below: the Bonferroni upper end says so
    above = {"a": [0.5, 0.6, 0.55, 0.52, 0.58], "b": [0.3, 0.35, 0.32, 0.31, 0.33], "c": [0.9, 1.0, 0.95, 0.92, 0.97]}
    e = iv.min_over(above)
    assert e["worst"] == "b" and e["value"] == pytest.approx(0.322) and e["ci"][0] > 0
    below = {**above, "d": [-0.5, -0.6, -0.55, -0.52, -0.58]}
    assert iv.min_over(below)["ci"][1] < 0
    # the upper end is the worst point's Bonferroni (k = 4) upper end, wider than its own 95% one
    d = np.array(below["d"])
    assert iv.min_over(below)["ci"][1] > iv.mean_ci(d)["ci"][1]


def test_probability_of_improvement():
    assert iv.prob_improvement([2, 3], [1, 1]) == 1.0
    assert iv.prob_improvement([1, 2], [2, 1]) == 0.5


def test_stratified_median_interval():
    e = iv.stratified([[1.0, 1.0, 1.0], [3.0, 3.0, 3.0]], lambda xs: np.mean([np.median(x) for x in xs]))
    assert e["value"] == 2.0 and e["ci"] == [2.0, 2.0]


# ------------------------------------------------------------------------------------- verdicts
def check(metric="m", op=">", value=0.0):
    return {"metric": metric, "op": op, "value": value, "says": "the spec's words"}


@pytest.mark.parametrize("ci,op,expected", [
    ([0.1, 0.2], ">", vd.REPRODUCED), ([-0.2, -0.1], ">", vd.NOT_REPRODUCED), ([-0.1, 0.1], ">", vd.INCONCLUSIVE),
    ([0.0, 0.1], ">", vd.INCONCLUSIVE), ([0.0, 0.1], ">=", vd.REPRODUCED), ([-0.1, 0.0], ">", vd.NOT_REPRODUCED),
    ([-0.1, 0.0], ">=", vd.INCONCLUSIVE), ([-0.2, -0.1], "<", vd.REPRODUCED), ([0.0, 0.1], "<", vd.NOT_REPRODUCED),
    ([-0.1, 0.0], "<=", vd.REPRODUCED), ([-0.1, 0.1], "<=", vd.INCONCLUSIVE), ([0.0, 0.0], "==", vd.REPRODUCED),
    ([0.0, 1.0], "==", vd.INCONCLUSIVE), ([0.5, 1.0], "==", vd.NOT_REPRODUCED),
])
def test_verdict_at_each_boundary(ci, op, expected):
    e = iv.effect(sum(ci) / 2, ci[0], ci[1], 5, "seeds")
    assert vd.decide_check(check(op=op), {"m": e})["verdict"] == expected


def test_inconclusive_says_how_much_narrower():
    row = vd.decide_check(check(), {"m": iv.effect(0.05, -0.05, 0.15, 3, "seeds")})
    assert row["verdict"] == vd.INCONCLUSIVE and row["narrower_by"] == pytest.approx(2.0)
    assert "2.0x narrower" in row["reason"] and "4x the seeds" in row["reason"]


def test_unstable_timing_and_single_samples_are_inconclusive():
    timed = {**iv.effect(1.5, 1.4, 1.6, 50, "pairs"), "unstable": "A/A ratio 1.08 outside [0.97, 1.03]"}
    assert vd.decide_check(check(value=1.0), {"m": timed})["verdict"] == vd.INCONCLUSIVE
    assert vd.decide_check(check(), {"m": iv.mean_ci([0.4])})["verdict"] == vd.INCONCLUSIVE


def test_unmeasured_effect_is_inconclusive_and_only_params_make_a_check_not_checkable():
    row = vd.decide_check(check(), {"m": iv.unmeasured("no point inside the wait-k range")})
    assert row["verdict"] == vd.INCONCLUSIVE and row["reason"] == "not measured in this run: no point inside the wait-k range"
    row = vd.decide_check({**check(), "not_checkable": "needs sparse kernels"}, {"m": iv.mean_ci([0.4, 0.5])})
    assert row["verdict"] == vd.NOT_CHECKABLE and row["reason"] == "not checkable at this scale: needs sparse kernels"
    assert vd.decide_check({**check(metric="absent"), "not_checkable": "why"}, {})["effect"]["value"] is None


def test_exact_outcomes_and_by_design_quantities():
    assert vd.decide_check(check(op="==", value=True), {"m": True})["verdict"] == vd.REPRODUCED
    assert vd.decide_check(check(op="==", value="depth"), {"m": "width"})["verdict"] == vd.NOT_REPRODUCED
    row = vd.decide_check(check(op=">=", value=0.6), {"m": iv.by_design(0.65, "keep ratios")})
    assert row["verdict"] == vd.REPRODUCED and "by design: keep ratios" in row["reason"]


def test_unreadable_checks_are_errors_not_verdicts():
    with pytest.raises(vd.ClaimError, match="'a.c'"):
        vd.decide_check(check(metric="a.c"), {"a": {"b": iv.mean_ci([1, 2])}})
    with pytest.raises(vd.ClaimError, match="must write an effect"):
        vd.decide_check(check(), {"m": 0.5})
    with pytest.raises(vd.ClaimError, match="threshold '0' \\(str\\) cannot be compared with an effect"):
        vd.decide_check(check(value="0"), {"m": iv.mean_ci([-1.0, -0.5])})
    with pytest.raises(vd.ClaimError, match="cannot be compared with the exact outcome"):
        vd.decide_check(check(op="==", value=1), {"m": True})


def test_the_analysis_must_write_what_it_declares():
    vd.check_declared({"a": {"b": iv.mean_ci([1, 2])}, "c": True}, {"a.b": "effect", "c": "bool"})
    with pytest.raises(vd.ClaimError, match="'a.x'"):
        vd.check_declared({"a": {"b": iv.mean_ci([1, 2])}}, {"a.x": "effect"})
    with pytest.raises(vd.ClaimError, match="declares 'c' as bool but wrote 0.5"):
        vd.check_declared({"c": 0.5}, {"c": "bool"})


def claim(checks, **extra):
    return {"id": "C1", "statement": "s", "published": "p", "checks": checks, **extra}


def test_holm_keeps_k_checks_from_multiplying_false_not_reproduced():
    """Four checks whose true effects sit on their thresholds: a 'not reproduced' claim should come
    out at most ~5% of the time (Holm), not ~1 - 0.975^4 = 9.6% (any check at 95%)."""
    rng = np.random.default_rng(0)
    checks = [check(metric=f"m{j}", op=">=", value=0.0) for j in range(4)]
    holm_nr = naive_nr = 0
    sims = 1500
    for _ in range(sims):
        metrics = {f"m{j}": iv.mean_ci(rng.normal(0, 1, 5)) for j in range(4)}
        v = vd.evaluate_claim(claim(checks, regime_none="test"), metrics)
        holm_nr += v["verdict"] == vd.NOT_REPRODUCED
        naive_nr += any(m["ci"][1] < 0 for m in metrics.values())
    assert holm_nr / sims < 0.045 and naive_nr / sims > 0.07


def test_holm_step_down_reasons():
    strong = iv.mean_ci([-3.0, -3.1, -2.9, -3.05, -2.95])   # violates at every level
    weak = iv.mean_ci([-0.3, -0.02, -0.25, -0.05, -0.2])     # violates at 95%, not at 1 - 0.05/2
    fine = iv.mean_ci([1.0, 1.1, 0.9, 1.05, 0.95])
    v = vd.evaluate_claim(claim([check("a"), check("b"), check("c")], regime_none="x"), {"a": strong, "b": weak, "c": fine})
    rows = {r["metric"]: r for r in v["checks"]}
    assert rows["a"]["verdict"] == vd.NOT_REPRODUCED and "Holm's level 1 - 0.05/3" in rows["a"]["reason"]
    assert rows["b"]["verdict"] == vd.INCONCLUSIVE and "but not at Holm's level 1 - 0.05/2" in rows["b"]["reason"]
    assert v["verdict"] == vd.NOT_REPRODUCED
    # one check alone: its 95% interval decides
    assert vd.evaluate_claim(claim([check("b")], regime_none="x"), {"b": weak})["verdict"] == vd.NOT_REPRODUCED


def test_a_failed_regime_makes_the_claim_inconclusive_whatever_its_checks_say():
    clear = iv.mean_ci([1.0, 1.1, 0.9, 1.05, 0.95])
    at_chance = iv.mean_ci([0.24, 0.26, 0.25, 0.27, 0.23])
    regime = [{"metric": "baseline_acc", "op": ">=", "value": 0.40, "says": "baseline above chance by 15 points"}]
    v = vd.evaluate_claim(claim([check()], regime=regime), {"m": clear, "baseline_acc": at_chance})
    assert v["verdict"] == vd.INCONCLUSIVE and v["checks_verdict"] == vd.REPRODUCED and v["regime"] == vd.REGIME_FAILED
    assert v["reason"].startswith("regime not reached: baseline above chance by 15 points")
    ok = vd.evaluate_claim(claim([check()], regime=regime), {"m": clear, "baseline_acc": iv.mean_ci([0.6, 0.62, 0.61])})
    assert ok["verdict"] == vd.REPRODUCED and ok["regime"] == vd.REGIME_MET and ok["reason"] is None
    # a regime check must hold wholly: an interval straddling its threshold is not enough
    straddle = iv.mean_ci([0.35, 0.45, 0.42, 0.38, 0.41])
    assert vd.evaluate_claim(claim([check()], regime=regime), {"m": clear, "baseline_acc": straddle})["regime"] == "not reached"
    none = vd.evaluate_claim(claim([check()], regime_none="an exact, measured outcome"), {"m": clear})
    assert none["regime"] == vd.REGIME_NONE and none["verdict"] == vd.REPRODUCED


def test_a_failed_seed_control_makes_its_claims_inconclusive():
    clear = iv.mean_ci([1.0, 1.1, 0.9, 1.05, 0.95])
    passed = vd.seed_control(iv.paired_diff([0.5, 0.52, 0.49], [0.51, 0.5, 0.5]), "baseline vs itself")
    failed = vd.seed_control(iv.paired_diff([0.6, 0.62, 0.61], [0.5, 0.5, 0.51]), "baseline vs itself")
    assert passed["passed"] and not failed["passed"]
    c = claim([check()], regime_none="x", controls=["seed_aa"])
    assert vd.evaluate_claim(c, {"m": clear, "controls": {"seed_aa": passed}})["verdict"] == vd.REPRODUCED
    v = vd.evaluate_claim(c, {"m": clear, "controls": {"seed_aa": failed}})
    assert v["verdict"] == vd.INCONCLUSIVE and v["reason"].startswith("control failed: seed_aa (seed A/A")
    timing = vd.timing_control(iv.effect(1.0, 0.98, 1.02, 40, "pairs"), "dense vs a copy")
    assert timing["passed"] and not vd.timing_control(iv.effect(1.0, 0.96, 1.02, 40, "pairs"), "x")["passed"]
    vd.check_declared({"controls": {"seed_aa": passed}}, {"controls.seed_aa": "control"})
    with pytest.raises(vd.ClaimError, match="as control"):
        vd.check_declared({"controls": {"seed_aa": clear}}, {"controls.seed_aa": "control"})


def test_by_design_claims_are_labelled():
    v = vd.evaluate_claim(claim([check(op=">=", value=0.6)], regime_none="x"), {"m": iv.by_design(0.65, "keep ratio")})
    assert v["verdict"] == vd.REPRODUCED and v["basis"] == "by design"


def test_inconclusive_over_seeds_says_how_many_seeds():
    e = iv.mean_ci([0.05, -0.02, 0.09])  # mean 0.04, sd 0.0557
    row = vd.decide_check(check(), {"m": e})
    assert row["verdict"] == vd.INCONCLUSIVE and "seeds at this spread" in row["reason"]
    n = vd.seeds_needed(e, 0.0)
    from scipy.stats import t
    sd = float(np.std([0.05, -0.02, 0.09], ddof=1))
    assert t.ppf(0.975, n - 1) * sd / n ** 0.5 < 0.04 <= t.ppf(0.975, n - 2) * sd / (n - 1) ** 0.5


def test_claim_combines_its_checks():
    assert vd.combine([vd.REPRODUCED, vd.INCONCLUSIVE]) == vd.INCONCLUSIVE
    assert vd.combine([vd.INCONCLUSIVE, vd.NOT_REPRODUCED]) == vd.NOT_REPRODUCED
    assert vd.combine([vd.REPRODUCED, vd.NOT_CHECKABLE]) == vd.NOT_CHECKABLE
    assert vd.combine([vd.REPRODUCED, vd.REPRODUCED]) == vd.REPRODUCED


# ------------------------------------------------------------------------------------- rendering
def test_paper_report_and_index(tmp_path, monkeypatch):
    from repro.core import mlqueue

    monkeypatch.setattr(mlqueue, "QUEUE", tmp_path / "queue")
    summary = tmp_path / "results" / "analysis"
    summary.mkdir(parents=True)
    prov = {"git_commit": "abc", "git_dirty": False, "params_hash": "h", "seed": 0, "device": "cpu",
            "wall_s": 1.5, "startup_s": 1.2, "threads": 1, "finished_at": "2026-01-01T00:00:10+00:00"}
    timing = vd.timing_control(iv.effect(1.0, 0.99, 1.01, 40, "pairs"), "dense vs a copy")
    metrics = {"p1": {"static_depth_efficiency": iv.effect(0.9, 0.87, 0.93, 40, "pairs"),
                      "lead_over_other_ranked": iv.effect(0.1, -0.05, 0.2, 40, "pairs"),
                      "static_depth_max_bound": iv.by_design(1.6, "bytes removed"),
                      "other_ranked_families": iv.by_design(3.0, "ranked")},
               "p2": {**{f"lead_band{i}": iv.mean_ci([-0.3, -0.31, -0.29, -0.3]) for i in (1, 2, 3)},
                      "dense_minus_unigram": iv.mean_ci([-1.0, -1.1, -0.9], "items"),
                      "lowrank_loss_at_largest": iv.mean_ci([0.06, 0.07, 0.065], "items")},
               "p3": {"taxonomy_matches": True},
               "controls": {name: timing for name in ("timing_aa_bound", "timing_aa_frontier", "sparse24_as_dense")}}
    (summary / "tables.md").write_text("## Table\n\n| a |\n|---|\n| 1 |\n")
    (summary / "fig.png").write_bytes(b"\x89PNG")
    prov["outputs_sha256"] = integrity.record(summary)
    prov["metrics_sha256"] = integrity.metrics_sha256(metrics)
    (summary / "metrics.json").write_text(json.dumps({"metrics": metrics, "provenance": prov}))
    out = tmp_path / "reports" / "pruninginfersim"
    render.paper_report("pruninginfersim", "mini", summary, [summary], out, parent_hash="abc123")
    md = (out / "report.md").read_text()
    assert "**inconclusive**" in md and "**not reproduced**" in md and "**reproduced**" in md
    assert "![fig](fig.png)" in md and "![forest](forest.png)" in md and (out / "forest.png").stat().st_size > 1000
    assert "95% CI [0.87, 0.93]" in md and "Chain wall-clock" in md and "2 s (budget 900 s: within)" in md
    # compute: wall x threads + start-up = 1.5 + 1.2 core-seconds, the floor on 2 cores half of it
    assert "Compute: 1 job, 3 core-seconds" in md and "less than 1 s" in md
    assert "<table>" in (out / "report.html").read_text()
    verdicts = json.loads((out / "verdicts.json").read_text())["claims"]
    assert [v["verdict"] for v in verdicts] == ["inconclusive", "not reproduced", "reproduced"]
    queued = [json.loads(p.read_text()) for p in (tmp_path / "queue").glob("*.json")]
    assert queued[0]["kind"] == "report" and queued[0]["tags"]["verdict.P1"] == "inconclusive"
    assert queued[0]["metrics"]["P1.0.p1.static_depth_efficiency"]["ci_lo"] == 0.87
    render.index("mini", [out], tmp_path / "reports")
    index = (tmp_path / "reports" / "index.md").read_text()
    assert "| [pruninginfersim](pruninginfersim/report.md) | 1 | 1 | 1 | 0 |" in index
    assert json.loads((out / "verdicts.json").read_text())["compute"] == {"jobs": 1, "core_s": 2.7, "startup_s": 1.2}
    assert "1 jobs, 3 core-seconds (1 of them process start-up)" in index and "min: within)" in index
    assert "| [pruninginfersim](pruninginfersim/report.md) | 1 | 1 | 1 | 0 | 0 | - | 0 of 3 |" in index
    over = render.compute_line([{"jobs": 400, "core_s": 15100.0, "startup_s": 870.0}], "mini")
    assert "at least 126 min on 2 cores" in over and "(budget for all papers 120 min: OVER)" in over
    assert (tmp_path / "reports" / "forest.png").stat().st_size > 1000
    (summary / "fig.png").write_bytes(b"\x89PN")  # a damaged input: the report names it
    with pytest.raises(integrity.IntegrityError, match="fig.png: sha256"):
        render.paper_report("pruninginfersim", "mini", summary, [summary], out)


def test_report_shows_regime_controls_and_by_design(tmp_path, monkeypatch):
    """A paper whose first claim misses its regime, whose second rests on a failed seed A/A, and whose
    third is decided by design: the report, verdicts.json, forest rows and the index say so."""
    from repro.core import mlqueue
    from repro.report import figures

    claims = [
        {"id": "C1", "statement": "a clear effect", "published": "x", "checks": [check("e.clear")],
         "regime": [{"metric": "e.baseline", "op": ">=", "value": 0.4, "says": "baseline above chance by 15 points"}]},
        {"id": "C2", "statement": "another clear effect", "published": "y", "checks": [check("e.clear")],
         "regime_none": "an exact outcome", "controls": ["seed_aa"]},
        {"id": "C3", "statement": "a ratio", "published": "z", "checks": [check("e.designed", ">=", 0.6)],
         "regime_none": "fixed by configuration"}]
    declared = {"e.clear": "effect", "e.baseline": "effect", "e.designed": "effect", "controls.seed_aa": "control",
                "controls.timing": "control"}
    monkeypatch.setattr(render, "load_paper", lambda paper: {"claims": claims})
    monkeypatch.setattr(render, "declared_metrics", lambda paper: declared)
    monkeypatch.setattr(mlqueue, "QUEUE", tmp_path / "queue")
    metrics = {"e": {"clear": iv.mean_ci([1.0, 1.1, 0.9, 1.05, 0.95]), "baseline": iv.mean_ci([0.24, 0.26, 0.25]),
                     "designed": iv.by_design(0.65, "keep ratio")},
               "controls": {"seed_aa": vd.seed_control(iv.paired_diff([0.6, 0.62, 0.61], [0.5, 0.5, 0.51]), "GRPO vs itself"),
                            "timing": vd.timing_control(iv.effect(1.0, 0.99, 1.01, 40, "pairs"), "dense vs a copy")}}
    summary = tmp_path / "results" / "analysis"
    summary.mkdir(parents=True)
    prov = {"git_commit": "abc", "git_dirty": False, "params_hash": "h", "seed": 0, "device": "cpu", "wall_s": 1.5,
            "startup_s": 1.2, "threads": 1, "finished_at": "2026-01-01T00:00:10+00:00",
            "outputs_sha256": integrity.record(summary), "metrics_sha256": integrity.metrics_sha256(metrics)}
    (summary / "metrics.json").write_text(json.dumps({"metrics": metrics, "provenance": prov}))
    out = tmp_path / "reports" / "toy"
    render.paper_report("toy", "mini", summary, [summary], out, parent_hash="h1")
    md = (out / "report.md").read_text()
    assert "Regime: **not reached**." in md and "| baseline above chance by 15 points |" in md
    assert "Why: regime not reached: baseline above chance by 15 points" in md
    assert "Why: control failed: seed_aa (seed A/A" in md and "## Controls" in md
    assert "| seed_aa | seed A/A | GRPO vs itself |" in md and "| timing | timing A/A | dense vs a copy |" in md
    assert "| C3 | a ratio | z | none | **reproduced** (by design) |" in md
    verdicts = json.loads((out / "verdicts.json").read_text())
    assert [c["verdict"] for c in verdicts["claims"]] == ["inconclusive", "inconclusive", "reproduced"]
    assert [c["checks_verdict"] for c in verdicts["claims"]] == ["reproduced", "reproduced", "reproduced"]
    queued = [json.loads(p.read_text()) for p in (tmp_path / "queue").glob("*.json")]
    assert queued[0]["tags"]["regime.C1"] == "not reached" and queued[0]["tags"]["regime.C2"] == "none"
    rows = figures.forest_rows({"toy": verdicts["claims"]})
    assert rows[0]["regime_failed"] and rows[0]["label"].endswith("[regime not reached]") and not rows[1]["regime_failed"]
    render.index("mini", [out], tmp_path / "reports", seed_offset=1000)
    index = (tmp_path / "reports" / "index.md").read_text()
    assert "| [toy](toy/report.md) | 1 | 0 | 2 | 0 | 1 | 1 of 1 | 0 of 1 |" in index and "**Replication**" in index


def test_seeds_items_table_cells():
    e = iv.hierarchical([[0.2] * 10, [0.4] * 10, [0.6] * 10])
    row = vd.seeds_items_table([("a - b", e), ("c", iv.unmeasured("no runs"))], "questions")
    assert row[0].startswith("| effect | value [95% CI, seeds x questions] | 95% CI, questions only |")
    assert row[2].startswith("| a - b | 0.400 [") and row[2].endswith("| [0.400, 0.400] | 3 | 10 |")
    assert row[3] == "| c | n/a (no runs) | [n/a, n/a] | 0 | n/a |"
