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


def test_three_seeds_interval_spans_the_seeds_and_holds_the_mean():
    e = iv.mean_ci([1.0, 2.0, 3.0])
    assert e["value"] == 2.0 and 1.0 <= e["ci"][0] < 2.0 < e["ci"][1] <= 3.0


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
    assert e["ci"][0] < 0.35 and e["ci"][1] > 0.45 and e["n"] == 3 and e["n_items"] == 150
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


def test_lead_is_positive_only_when_intervals_do_not_overlap():
    a = iv.effect(1.0, 0.9, 1.1, 3, "pairs")
    below = {"x": iv.effect(0.7, 0.6, 0.8, 3, "pairs")}
    overlapping = {"x": iv.effect(0.95, 0.85, 1.05, 3, "pairs")}
    above = {"x": iv.effect(1.3, 1.2, 1.4, 3, "pairs")}
    assert iv.lead(a, below)["ci"][0] > 0
    lo, hi = iv.lead(a, overlapping)["ci"]
    assert lo < 0 < hi
    assert iv.lead(a, above)["ci"][1] < 0


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


def test_claim_combines_its_checks():
    assert vd.combine([vd.REPRODUCED, vd.INCONCLUSIVE]) == vd.INCONCLUSIVE
    assert vd.combine([vd.INCONCLUSIVE, vd.NOT_REPRODUCED]) == vd.NOT_REPRODUCED
    assert vd.combine([vd.REPRODUCED, vd.NOT_CHECKABLE]) == vd.NOT_CHECKABLE
    assert vd.combine([vd.REPRODUCED, vd.REPRODUCED]) == vd.REPRODUCED


# ------------------------------------------------------------------------------------- rendering
def test_paper_report_and_index(tmp_path, monkeypatch):
    from repro.core import tracking

    monkeypatch.setattr(tracking, "QUEUE", tmp_path / "queue")
    summary = tmp_path / "results" / "analysis"
    summary.mkdir(parents=True)
    prov = {"git_commit": "abc", "git_dirty": False, "params_hash": "h", "seed": 0, "device": "cpu",
            "wall_s": 1.5, "startup_s": 1.2, "threads": 1, "finished_at": "2026-01-01T00:00:10+00:00"}
    metrics = {"p1": {"static_depth_efficiency": iv.effect(0.9, 0.87, 0.93, 40, "pairs"),
                      "lead_over_other_ranked": iv.effect(0.1, -0.05, 0.2, 40, "pairs")},
               "p2": {"paper_order_holds": iv.effect(0.0, 0.0, 0.0, 2000, "pairs x items")},
               "p3": {"taxonomy_matches": True}}
    (summary / "tables.md").write_text("## Table\n\n| a |\n|---|\n| 1 |\n")
    (summary / "fig.png").write_bytes(b"\x89PNG")
    prov["outputs_sha256"] = integrity.record(summary)
    (summary / "metrics.json").write_text(json.dumps({"metrics": metrics, "provenance": prov}))
    out = tmp_path / "reports" / "pruninginfersim"
    render.paper_report("pruninginfersim", "mini", summary, [summary], out, parent_hash="abc123")
    md = (out / "report.md").read_text()
    assert "**inconclusive**" in md and "**not reproduced**" in md and "**reproduced**" in md
    assert "![fig](fig.png)" in md and "![forest](forest.png)" in md and (out / "forest.png").stat().st_size > 1000
    assert "95% CI [0.87, 0.93]" in md and "Chain wall-clock" in md and "2 s (budget 720 s: within)" in md
    assert "<table>" in (out / "report.html").read_text()
    verdicts = json.loads((out / "verdicts.json").read_text())["claims"]
    assert [v["verdict"] for v in verdicts] == ["inconclusive", "not reproduced", "reproduced"]
    queued = [json.loads(p.read_text()) for p in (tmp_path / "queue").glob("*.json")]
    assert queued[0]["kind"] == "report" and queued[0]["tags"]["verdict.P1"] == "inconclusive"
    assert queued[0]["metrics"]["P1.0.p1.static_depth_efficiency"]["ci_lo"] == 0.87
    render.index("mini", [out], tmp_path / "reports")
    index = (tmp_path / "reports" / "index.md").read_text()
    assert "| [pruninginfersim](pruninginfersim/report.md) | 1 | 1 | 1 | 0 |" in index
    assert (tmp_path / "reports" / "forest.png").stat().st_size > 1000
    (summary / "fig.png").write_bytes(b"\x89PN")  # a damaged input: the report names it
    with pytest.raises(integrity.IntegrityError, match="fig.png: sha256"):
        render.paper_report("pruninginfersim", "mini", summary, [summary], out)


def test_seeds_items_table_cells():
    e = iv.hierarchical([[0.2] * 10, [0.4] * 10, [0.6] * 10])
    row = vd.seeds_items_table([("a - b", e), ("c", iv.unmeasured("no runs"))], "questions")
    assert row[0].startswith("| effect | value [95% CI, seeds x questions] | 95% CI, questions only |")
    assert row[2].startswith("| a - b | 0.400 [") and row[2].endswith("| [0.400, 0.400] | 3 | 30 |")
    assert row[3] == "| c | n/a (no runs) | [n/a, n/a] | 0 | n/a |"
