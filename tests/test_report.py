"""Claim verdicts from constructed metrics, and the rendered report/index."""
import json

from repro.report import verdicts as rc
from repro.report import render

CLAIM = {"id": "X1", "statement": "s", "published": "p",
         "checks": [{"metric": "a.b", "op": ">=", "value": 0.85}, {"metric": "best", "op": "==", "value": "depth"}]}


def test_reproduced_when_every_check_holds():
    v = rc.evaluate_claim(CLAIM, {"a": {"b": 0.9}, "best": "depth"})
    assert v["verdict"] == rc.REPRODUCED and "0.9 >= 0.85" in v["reason"]


def test_not_reproduced_names_the_failed_check():
    v = rc.evaluate_claim(CLAIM, {"a": {"b": 0.5}, "best": "depth"})
    assert v["verdict"] == rc.NOT_REPRODUCED and v["reason"] == "a.b = 0.5, needs >= 0.85"


def test_missing_metric_is_not_checkable():
    v = rc.evaluate_claim(CLAIM, {"a": {"b": None}, "best": "depth"})
    assert v["verdict"] == rc.NOT_CHECKABLE and "a.b" in v["reason"]


def test_type_mismatch_is_a_failure_not_a_crash():
    v = rc.evaluate_claim({**CLAIM, "checks": [{"metric": "x", "op": ">", "value": 1}]}, {"x": "text"})
    assert v["verdict"] == rc.NOT_REPRODUCED


def test_paper_report_and_index(tmp_path):
    summary = tmp_path / "results" / "analysis"
    summary.mkdir(parents=True)
    prov = {"git_commit": "abc", "git_dirty": False, "params_hash": "h", "seed": 0, "device": "cpu",
            "wall_s": 1.5, "threads": 1, "finished_at": "2026-01-01T00:00:10+00:00"}
    metrics = {"p1": {"best_family": "static_depth", "static_depth_efficiency": 0.9},
               "p2": {"paper_order_holds": False}, "p3": {"taxonomy_matches": True}}
    (summary / "metrics.json").write_text(json.dumps({"metrics": metrics, "provenance": prov}))
    (summary / "tables.md").write_text("## Table\n\n| a |\n|---|\n| 1 |\n")
    (summary / "fig.png").write_bytes(b"\x89PNG")
    out = tmp_path / "reports" / "pruninginfersim"
    render.paper_report("pruninginfersim", "mini", summary, [summary], out)
    md = (out / "report.md").read_text()
    assert "**reproduced**" in md and "**not reproduced**" in md and "![fig](fig.png)" in md
    assert "Chain wall-clock" in md and "2 s (budget 600 s: within)" in md
    assert "<table>" in (out / "report.html").read_text()
    verdicts = json.loads((out / "verdicts.json").read_text())["claims"]
    assert [v["verdict"] for v in verdicts] == ["reproduced", "not reproduced", "reproduced"]
    render.index("mini", [out], tmp_path / "reports")
    index = (tmp_path / "reports" / "index.md").read_text()
    assert "| [pruninginfersim](pruninginfersim/report.md) | 2 | 1 | 0 |" in index
