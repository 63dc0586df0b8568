"""Replication on a disjoint seed set (`make replicate`), the comparison of two report trees, and the
claims' regime/controls keys in params."""
import json

import pytest
import yaml
from scipy import stats

from repro.core import config as rc
from repro.report import compare


def test_shift_seeds_moves_training_seeds_only():
    section = {"seeds": [0, 1, 2], "select": {"seed": 0, "steps": 3}, "mu_sweep": {"values": [0.0, 1.0], "seeds": [0, 1]},
               "arms": {"a": {"lr": 0.1, "aa_seeds": [100, 101]}}, "data": {"size": 5}, "flag": True}
    shifted = rc.shift_seeds(section, 1000)
    assert shifted["seeds"] == [1000, 1001, 1002] and shifted["select"] == {"seed": 1000, "steps": 3}
    assert shifted["mu_sweep"] == {"values": [0.0, 1.0], "seeds": [1000, 1001]}
    assert shifted["arms"]["a"] == {"lr": 0.1, "aa_seeds": [1100, 1101]} and shifted["data"] == {"size": 5}
    assert rc.shift_seeds(section, 0) is section and section["seeds"] == [0, 1, 2]  # no copy, no mutation
    assert rc.run_name("mini", 0) == "mini" and rc.run_name("mini", 1000) == "mini-seeds1000"


def test_every_params_file_shifts_into_disjoint_seeds():
    """The replication's seeds never meet the reproduction's, in any paper."""
    def seeds(node, out):
        if isinstance(node, dict):
            for k, v in node.items():
                if k in ("seed", "seeds") or k.endswith(("_seed", "_seeds")):
                    out.update(v if isinstance(v, list) else [v])
                else:
                    seeds(v, out)
        return out

    offset = rc.load_yaml(rc.REPO_ROOT / "params" / "config.yaml")["replicate_offset"]
    for path in sorted((rc.REPO_ROOT / "params").glob("*.yaml")):
        if path.name == "config.yaml":
            continue
        mini = rc.load_paper(path.stem)["mini"]
        base, rep = seeds(mini, set()), seeds(rc.shift_seeds(mini, offset), set())
        assert base and not base & rep, f"{path.name}: seeds {sorted(base)} and the replication's overlap"


def test_stage_sees_the_shifted_seeds_and_accepts_the_shifted_hash(tmp_path):
    """Snakemake hashes the shifted section; the job shifts the file's section the same way, so the
    hash check passes and the job's params carry the replication's seeds."""
    from repro.core import stage

    sha = rc.params_hash(rc.select(rc.shift_seeds(rc.load_paper("mem2evolve")["smoke"], 1000), ["runs"]))
    args = ["--paper", "mem2evolve", "--stage", "x", "--profile", "smoke", "--sections", "runs", "--params-sha", sha,
            "--seed", "0", "--out", str(tmp_path / "out"), "--no-tracking"]
    stage.main(lambda ctx: {"seeds": ctx.params["runs"]["seeds"]}, args + ["--seed-offset", "1000"])
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["metrics"]["seeds"] == [1000]
    with pytest.raises(SystemExit, match="changed after Snakemake scheduled"):  # no offset: another section
        stage.main(lambda ctx: {}, [a if a != str(tmp_path / "out") else str(tmp_path / "other") for a in args])


def tree(root, paper, verdicts):
    (root / paper).mkdir(parents=True)
    claims = [{"id": cid, "verdict": v, "checks": [{"effect": {"value": 0.1, "ci": [0.0, 0.2], "n": 5, "unit": "seeds"}}]}
              for cid, v in verdicts.items()]
    (root / paper / "verdicts.json").write_text(json.dumps({"paper": paper, "claims": claims}))


def test_compare_counts_agreement_and_lists_differences(tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    tree(a, "p1", {"C1": "reproduced", "C2": "inconclusive"})
    tree(a, "p2", {"D1": "not reproduced"})
    tree(b, "p1", {"C1": "reproduced", "C2": "not reproduced"})
    tree(b, "p3", {"E1": "reproduced"})
    compare.main([str(a), str(b), "--out", str(tmp_path / "agreement.md")])
    out = capsys.readouterr().out
    assert out.strip().splitlines()[-1] == "verdict agreement: 1 of 2 claims"
    assert "p1 C2: inconclusive (A) vs not reproduced (B)" in out and "| p2 | D1 | not reproduced | absent |" in out
    assert (tmp_path / "agreement.md").read_text().strip().endswith("verdict agreement: 1 of 2 claims")
    with pytest.raises(SystemExit, match="no such report tree"):
        compare.main([str(a), str(tmp_path / "missing")])


def test_compare_flags_estimates_further_apart_than_their_intervals_allow():
    t4 = {"unit": "seeds", "n": 5, "df": 4.0}
    a = {"value": 0.10, "ci": [0.08, 0.12], **t4}
    near = {**a, "value": 0.11, "ci": [0.09, 0.13]}
    far = {**a, "value": 0.16, "ci": [0.14, 0.18]}
    # se from the half-width: 0.02 / t_{0.975, 4} = 0.0072; Welch-Satterthwaite with equal se and df 4
    # each: df 8, t = 0.06 / (0.0072 * sqrt 2) = 5.89
    se = 0.02 / stats.t.ppf(0.975, 4)
    assert compare.apart(a, far) == pytest.approx(2 * stats.t.sf(0.06 / (se * 2 ** 0.5), 8))
    # an interval widened by its A/A control counts at its reported width
    assert compare.apart(a, {**far, "ci": [0.10, 0.22]}) > compare.apart(a, far)
    assert compare.apart(a, near) > 0.05 and compare.apart(a, far) < 0.001
    # no se or df (a bootstrap over items): the 95% interval's half-width / 1.96 and the normal
    boot = {"value": 0.1, "ci": [0.0, 0.2], "n": 500, "unit": "items"}
    assert compare.apart(boot, {**boot, "value": 0.3}) == pytest.approx(2 * stats.norm.sf(0.2 / (0.2 / 1.96 / 2 * 2 ** 0.5)), rel=1e-3)
    assert compare.apart({"value": 0.3, "ci": [None, None], "n": 0, "unit": "by design"}, a) is None


def test_compare_counts_effects_apart(tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    tree(a, "p1", {"C1": "reproduced", "C2": "reproduced"})
    tree(b, "p1", {"C1": "reproduced", "C2": "reproduced"})
    moved = json.loads((b / "p1" / "verdicts.json").read_text())
    moved["claims"][1]["checks"][0]["effect"].update(value=0.9, ci=[0.8, 1.0])  # C2's replication lies far off
    (b / "p1" / "verdicts.json").write_text(json.dumps(moved))
    compare.main([str(a), str(b)])
    out = capsys.readouterr().out
    assert "further apart than their intervals allow" in out and ": 1 of 2: p1 C2" in out
    assert out.strip().splitlines()[-1] == "verdict agreement: 2 of 2 claims"


def test_params_refer_only_to_declared_regime_metrics_and_controls():
    declared = {"a.x": "effect", "controls.seed_aa": "control"}
    ok = {"id": "C1", "statement": "s", "published": "p", "checks": [{"metric": "a.x", "op": ">", "value": 0, "says": "s"}],
          "regime": [{"metric": "a.x", "op": ">=", "value": 0.4, "says": "baseline above chance"}], "controls": ["seed_aa"]}
    rc.validate_claims([ok], declared, "params/p.yaml")
    with pytest.raises(rc.ParamsError, match=r"claims.0.regime.0.metric': 'a.y' is not a metric"):
        rc.validate_claims([{**ok, "regime": [{**ok["regime"][0], "metric": "a.y"}]}], declared, "params/p.yaml")
    with pytest.raises(rc.ParamsError, match=r"claims.0.controls.0': 'timing' is not a control"):
        rc.validate_claims([{**ok, "controls": ["timing"]}], declared, "params/p.yaml")
    with pytest.raises(rc.ParamsError, match="is not a metric"):  # a control is not a checkable metric
        rc.validate_claims([{**ok, "checks": [{**ok["checks"][0], "metric": "controls.seed_aa"}]}], declared, "p")


def test_schema_refuses_a_claim_without_regime_or_regime_none(tmp_path):
    params = rc.load_yaml(rc.REPO_ROOT / "params" / "mem2evolve.yaml")
    claim = params["claims"][0]
    for key in ("regime", "regime_none"):
        claim.pop(key, None)
    path = tmp_path / "mem2evolve.yaml"
    path.write_text(yaml.safe_dump(params))
    with pytest.raises(rc.ParamsError, match=r"claims.0': claim .* needs `regime:` .* or `regime_none:"):
        rc.load_paper("mem2evolve", path)
    claim["regime"], claim["regime_none"] = [dict(claim["checks"][0])], "both"
    path.write_text(yaml.safe_dump(params))
    with pytest.raises(rc.ParamsError, match="claims.0'"):
        rc.load_paper("mem2evolve", path)
