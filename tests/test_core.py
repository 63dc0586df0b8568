"""repro.core: params validation and hashing, atomic writes, provenance, timing, code deps."""
import copy
import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from repro.core import config as rc
from repro.core.deps import module_sources
from repro.core.io import atomic_dir, atomic_write_json, sha256_path


@pytest.fixture
def pis_params():
    return rc.load_paper("pruninginfersim")


def test_shipped_params_are_valid(pis_params):
    rc.validate_config(rc.load_yaml(rc.REPO_ROOT / "params" / "config.yaml"))
    assert {"smoke", "mini", "paper", "claims"} <= set(pis_params)


@pytest.mark.parametrize("mutate, key, words", [
    (lambda p: p["mini"]["train"].__setitem__("steps", -3), "mini.train.steps", "minimum"),
    (lambda p: p["smoke"]["train"].__setitem__("stepz", 3), "smoke.train", "stepz"),
    (lambda p: p["mini"]["quality_model"].__setitem__("hidden_size", "big"), "mini.quality_model.hidden_size", "integer"),
    (lambda p: p["mini"]["prune"].__setitem__("sparsities", [1.5]), "mini.prune.sparsities.0", "maximum"),
    (lambda p: p["paper"]["families"].append("magic"), "paper.families.6", "magic"),
    (lambda p: p["claims"][0]["checks"][0].__setitem__("op", "~"), "claims.0.checks.0.op", "~"),
    (lambda p: p.pop("mini"), "<top level>", "mini"),
    # claims: a typo in a metric path, a threshold of the wrong type, a duplicated id, a bool compared by size
    (lambda p: p["claims"][0]["checks"][0].__setitem__("metric", "p1.static_depth_efficiencyy"),
     "claims.0.checks.0.metric", "not a metric the analysis declares; it writes p1.lead_over_other_ranked"),
    (lambda p: p["claims"][0]["checks"][0].__setitem__("value", "0.85"), "claims.0.checks.0.value",
     "'0.85' (str) for p1.static_depth_efficiency (effect): expected a number"),
    (lambda p: p["claims"][0]["checks"][0].__setitem__("value", True), "claims.0.checks.0.value", "expected a number"),
    (lambda p: p["claims"].append(copy.deepcopy(p["claims"][0])), "claims.3.id", "claim id 'P1' appears twice"),
    (lambda p: p["claims"][2]["checks"][0].__setitem__("op", ">="), "claims.2.checks.0.op", "use one of ==, !="),
    (lambda p: p["claims"][0]["checks"][0].__setitem__("not_checkable", ""), "claims.0.checks.0.not_checkable", "non-empty"),
])
def test_schema_errors_name_file_and_key(pis_params, mutate, key, words):
    bad = copy.deepcopy(pis_params)
    mutate(bad)
    with pytest.raises(rc.ParamsError) as err:
        rc.validate_paper(bad, "pruninginfersim")
    msg = str(err.value)
    assert msg.startswith("params/pruninginfersim.yaml: key ")
    assert f"'{key}'" in msg and words in msg


def test_config_schema_rejects_unknown_profile():
    cfg = rc.load_yaml(rc.REPO_ROOT / "params" / "config.yaml")
    cfg["profile"] = "huge"
    with pytest.raises(rc.ParamsError, match="key 'profile'"):
        rc.validate_config(cfg)


def test_params_hash_is_stable_and_sensitive():
    a = {"x": 1, "y": {"b": [1, 2], "a": 0.1}}
    b = {"y": {"a": 0.1, "b": [1, 2]}, "x": 1}  # same content, other key order
    assert rc.params_hash(a) == rc.params_hash(b)
    assert len(rc.params_hash(a)) == 12
    # stable across processes (no PYTHONHASHSEED dependence)
    code = "from repro.core.config import params_hash; print(params_hash({'x': 1, 'y': {'b': [1, 2], 'a': 0.1}}))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "PYTHONHASHSEED": "123"}, check=True).stdout.strip()
    assert out == rc.params_hash(a)
    assert rc.params_hash({**a, "x": 2}) != rc.params_hash(a)
    assert rc.params_hash({"v": [1, 2]}) != rc.params_hash({"v": [2, 1]})


def test_select_names_missing_sections():
    with pytest.raises(rc.ParamsError, match="lacks"):
        rc.select({"a": 1}, ["a", "b"])


def test_atomic_dir_leaves_nothing_on_error(tmp_path):
    target = tmp_path / "out"
    with pytest.raises(RuntimeError):
        with atomic_dir(target) as scratch:
            (scratch / "half.bin").write_bytes(b"x" * 10)
            raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []


def test_atomic_dir_replaces_previous_output(tmp_path):
    target = tmp_path / "out"
    with atomic_dir(target) as scratch:
        (scratch / "a").write_text("1")
    with atomic_dir(target) as scratch:
        (scratch / "b").write_text("2")
    assert sorted(p.name for p in target.iterdir()) == ["b"]


def test_killed_writer_leaves_no_finished_file(tmp_path):
    """SIGKILL in the middle of a write: the target never appears, only a .partial leftover."""
    target = tmp_path / "big.json"
    script = textwrap.dedent(f"""
        import os, signal
        import repro.core.io as io
        real = os.replace
        def die(*a, **k):
            os.kill(os.getpid(), signal.SIGKILL)
        io.os.replace = die
        io.atomic_write_json({str(target)!r}, {{"x": list(range(1000))}})
    """)
    proc = subprocess.run([sys.executable, "-c", script])
    assert proc.returncode == -signal.SIGKILL
    assert not target.exists()
    # a later successful write works and cleans nothing up it should not
    atomic_write_json(target, {"ok": True})
    assert json.loads(target.read_text()) == {"ok": True}


def test_killed_stage_rerun_is_clean(tmp_path):
    """A `.partial` dir left by a killed job is discarded by the next run of the job."""
    target = tmp_path / "stage"
    (tmp_path / "stage.partial").mkdir()
    (tmp_path / "stage.partial" / "stale").write_text("old")
    with atomic_dir(target) as scratch:
        (scratch / "fresh").write_text("new")
    assert [p.name for p in target.iterdir()] == ["fresh"]
    assert not (tmp_path / "stage.partial").exists()


def test_sha256_of_dir_depends_on_names_and_contents(tmp_path):
    (tmp_path / "a").write_text("1")
    h1 = sha256_path(tmp_path)
    (tmp_path / "a").write_text("2")
    assert sha256_path(tmp_path) != h1


def test_stage_writes_metrics_with_provenance(tmp_path):
    from repro.core.stage import main

    out = tmp_path / "job"
    inp = tmp_path / "in.txt"
    inp.write_text("data")

    def run(ctx):
        (ctx.out / "artifact.txt").write_text(str(ctx.params))
        return {"value": 1.5, "nested": {"n": 2}}

    main(run, ["--paper", "pruninginfersim", "--stage", "unit", "--profile", "smoke", "--sections",
               "train", "--seed", "7", "--threads", "1", "--out", str(out), "--input", f"x={inp}",
               "--no-tracking"])
    m = json.loads((out / "metrics.json").read_text())
    assert m["metrics"] == {"value": 1.5, "nested": {"n": 2}}
    prov = m["provenance"]
    for key in ("git_commit", "git_dirty", "params_hash", "seed", "profile", "versions", "device",
                "threads", "wall_s", "inputs_sha256"):
        assert key in prov
    assert prov["seed"] == 7 and prov["profile"] == "smoke"
    assert prov["inputs_sha256"]["x"] == sha256_path(inp)
    assert {"python", "torch", "transformers", "snakemake"} <= set(prov["versions"])
    assert not (tmp_path / "job.partial").exists()


def test_theoretical_bound_hand_computed():
    from repro.core.flops import theoretical_bound

    assert theoretical_bound(0.0) == 1.0
    assert theoretical_bound(0.5) == 2.0
    assert theoretical_bound(0.75) == pytest.approx(4.0)
    with pytest.raises(ValueError):
        theoretical_bound(1.0)


def test_gemm_flops_and_recorder():
    from repro.core import flops

    with flops.record_gemms() as log:
        flops.record("a", 4, 3, 2)
        flops.record("b", 2, 2, 2, count=3, density=0.5, nbytes=16)
    assert [g.flops for g in log] == [2 * 4 * 3 * 2, 2 * 2 * 2 * 2 * 3 * 0.5]
    assert flops.total_bytes(log) == 16
    assert not flops.recording()


def test_timing_identical_callables_give_an_interval_holding_one():
    import time

    from repro.core.timing import AA, interleaved
    from repro.report.intervals import speedup

    work = lambda: time.sleep(0.004)  # noqa: E731  (sleeps: a duration the machine's load barely moves)
    # a 95% interval misses the truth once in 20 by construction: three independent measurements that
    # all miss 1 (about 1 in 8000 by chance) mean the harness is biased
    intervals = []
    for _ in range(3):
        pairs = interleaved(work, {AA: work}, pairs=12, warmup=1, flush_mb=1)
        assert len(pairs[AA]["baseline_s"]) == len(pairs[AA]["variant_s"]) == 12
        aa = speedup(pairs[AA])
        assert aa["n"] == 12
        intervals.append(aa["ci"])
        if aa["ci"][0] <= 1.0 <= aa["ci"][1]:
            break
    else:
        raise AssertionError(f"no A/A interval holds 1: {intervals}")


def test_timing_twice_the_work_is_a_ratio_near_two():
    import time

    from repro.core.timing import interleaved
    from repro.report.intervals import speedup

    double = lambda: time.sleep(0.008)  # noqa: E731
    half = lambda: time.sleep(0.004)  # noqa: E731
    # on a loaded machine each sleep overshoots by a similar few ms, which pulls the ratio toward 1;
    # the bounds say "about twice, the right way round", not a precise 2
    sp = speedup(interleaved(double, {"half": half}, pairs=20, warmup=1, flush_mb=1)["half"])
    assert 1.3 < sp["value"] < 2.3 and sp["ci"][0] > 1.2


def test_timing_alternates_the_order_within_pairs():
    from repro.core.timing import interleaved

    order = []
    interleaved(lambda: order.append("b"), {"v": lambda: order.append("v")}, pairs=4, warmup=0, flush_mb=1)
    assert order == ["b", "v", "v", "b", "b", "v", "v", "b"]


def test_code_deps_follow_imports_only():
    train = module_sources("repro.papers.pruninginfersim.train")
    assert "src/repro/data/corpus.py" in train and "src/repro/core/stage.py" in train
    assert "src/repro/papers/pruninginfersim/latency.py" not in train
    assert "src/repro/papers/pruninginfersim/method.py" not in train
    prune = module_sources("repro.papers.pruninginfersim.prune")
    assert "src/repro/papers/pruninginfersim/method.py" in prune
    with pytest.raises(ValueError):
        module_sources("repro.nope")


def test_training_stops_when_after_step_says_so():
    import torch
    from transformers import LlamaForCausalLM

    from conftest import tiny_llama_config
    from repro.models.training import train_causal_lm

    torch.manual_seed(0)
    model = LlamaForCausalLM(tiny_llama_config(num_hidden_layers=1))
    seen = []
    losses = train_causal_lm(model, lambda step: torch.randint(0, 256, (2, 8)), steps=10, lr=1e-3,
                             after_step=lambda step: seen.append(step) or step == 3)
    assert len(losses) == 4 and seen == [0, 1, 2, 3]


def test_near_duplicates_catch_copies_not_shared_boilerplate():
    from repro.data.corpus import near_duplicates

    table = [f"    '\\x{i:02x}'     #  0x{i:02X} -> CHAR {i}" for i in range(40)]
    train = {"cp850.py": "\n".join(table), "other.py": "import os\nimport sys\ndef main():\n    return None\n"}
    val = {"cp858.py": "\n".join(table[:38] + ["    '\\u20ac'     #  0xD5 -> EURO SIGN"] * 2),
           "fresh.py": "import os\nimport sys\n" + "\n".join(f"value_{i} = compute_something({i})" for i in range(9)),
           "short.py": "import os\n"}
    found = near_duplicates(val, train, containment=0.5)
    assert found == {"cp858.py": ("cp850.py", round(38 / 39, 3))}  # the two EURO lines are one distinct line
    assert near_duplicates(val, train, containment=0.99) == {}


def _stage(run, out, *extra):
    from repro.core.stage import main

    main(run, ["--paper", "pruninginfersim", "--stage", "unit", "--profile", "smoke", "--sections", "train",
               "--seed", "0", "--out", str(out), "--no-tracking", *extra])


def _write_checkpoint(ctx):
    (ctx.out / "model").mkdir()
    (ctx.out / "model" / "model.safetensors").write_bytes(bytes(range(256)) * 64)
    return {"loss": 1.0}


def test_truncated_checkpoint_is_refused_naming_the_file(tmp_path):
    from repro.core import integrity

    producer = tmp_path / "train"
    _stage(_write_checkpoint, producer)
    recorded = json.loads((producer / "metrics.json").read_text())["provenance"]["outputs_sha256"]
    assert set(recorded) == {"model/model.safetensors"}
    assert integrity.problems(producer) == []
    ckpt = producer / "model" / "model.safetensors"
    ckpt.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])
    loaded = []
    with pytest.raises(SystemExit, match=r"model/model\.safetensors: sha256 .* \(8192 bytes\) but its job recorded"):
        _stage(lambda ctx: loaded.append(1) or {}, tmp_path / "prune", "--input", f"model={producer}")
    assert not loaded and not (tmp_path / "prune").exists()  # refused before any work
    with pytest.raises(SystemExit):  # the verify command says so too (exit 1)
        integrity.main([str(tmp_path)])
    (producer / "stray.bin").write_bytes(b"x")
    ckpt.unlink()
    bad = integrity.problems(producer)
    assert any("model.safetensors: missing" in b for b in bad) and any("stray.bin: not written by its job" in b for b in bad)


def test_input_hashes_are_identical_across_two_identical_runs(tmp_path):
    from repro.papers.pruninginfersim.data import run as data_stage
    from repro.core.stage import main

    recorded = []
    for i in (1, 2):
        data = tmp_path / f"run{i}" / "data"
        main(data_stage, ["--paper", "pruninginfersim", "--stage", "data", "--profile", "smoke", "--sections",
                          "data", "--seed", "0", "--out", str(data), "--no-tracking"])
        _stage(lambda ctx: {}, tmp_path / f"run{i}" / "next", "--input", f"data={data}")
        recorded.append(json.loads((tmp_path / f"run{i}" / "next" / "metrics.json").read_text())["provenance"])
    first, second = recorded
    assert first["inputs_sha256"] == second["inputs_sha256"]


def test_params_edited_after_scheduling_stop_the_job(tmp_path):
    params = rc.load_paper("pruninginfersim")
    scheduled = rc.params_hash(rc.select(params["smoke"], ["train"]))
    edited = copy.deepcopy(params)
    edited["smoke"]["train"]["lr"] = edited["smoke"]["train"]["lr"] * 2
    path = tmp_path / "pruninginfersim.yaml"
    path.write_text(__import__("yaml").safe_dump(edited))
    ran = []
    with pytest.raises(SystemExit, match=r"pruninginfersim\.yaml: sections train of profile smoke changed after Snakemake"):
        _stage(lambda ctx: ran.append(1) or {}, tmp_path / "job", "--params", str(path), "--params-sha", scheduled)
    assert not ran
    _stage(lambda ctx: ran.append(1) or {}, tmp_path / "job", "--params-sha", scheduled)  # unchanged: runs
    assert ran == [1]


def test_sft_batch_puts_the_loss_on_the_target_only():
    import torch

    from repro.models.training import sft_batch

    b = sft_batch([([5, 6, 7], [8, 9]), ([5], [8, 9, 10, 11])], pad_id=0, max_len=4)
    assert b["input_ids"].tolist() == [[5, 6, 7, 8], [5, 8, 9, 10]]  # truncated to max_len
    assert b["labels"].tolist() == [[-100, -100, -100, 8], [-100, 8, 9, 10]]
    short = sft_batch([([1], [2]), ([1, 3], [2, 4])], pad_id=0, max_len=8)
    assert short["input_ids"].tolist() == [[1, 2, 0, 0], [1, 3, 2, 4]]
    assert short["labels"].tolist() == [[-100, 2, -100, -100], [-100, -100, 2, 4]]
    assert torch.equal(short["attention_mask"], torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]]))


def _write_effect(ctx):
    (ctx.out / "table.md").write_text("| effect |\n")
    return {"p1": {"effect": {"value": 0.12, "ci": [0.05, 0.2], "n": 3, "unit": "seeds"}}}


def test_an_edited_number_in_metrics_json_is_refused_naming_the_file(tmp_path):
    """metrics.json carries a digest of its metrics block: flipping an effect's sign (or truncating
    the file) is named by every reader, like a truncated checkpoint."""
    from repro.core import integrity, snapshot

    producer = tmp_path / "analysis"
    _stage(_write_effect, producer)
    path = producer / "metrics.json"
    data = json.loads(path.read_text())
    recorded = data["provenance"]["metrics_sha256"]
    assert recorded == integrity.metrics_sha256(data["metrics"]) and integrity.problems(producer) == []
    data["metrics"]["p1"]["effect"]["value"] = -0.12
    path.write_text(json.dumps(data, indent=2))
    named = rf"{path}: metrics block sha256 \w{{16}}\.\.\. but its job recorded {recorded[:16]}\.\.\."
    with pytest.raises(SystemExit, match=named):  # a job reading the folder
        _stage(lambda ctx: {}, tmp_path / "report", "--input", f"summary={producer}")
    with pytest.raises(integrity.IntegrityError, match=named):  # the report (integrity.verify)
        integrity.verify(producer)
    with pytest.raises(SystemExit, match=named):  # `make snapshot`
        snapshot.verify_trees([tmp_path])
    with pytest.raises(SystemExit):  # `make verify-results`: exit 1
        integrity.main([str(tmp_path)])
    path.write_text(path.read_text()[:100])
    (bad,) = integrity.problems(producer)
    assert bad.startswith(f"{path}: not valid JSON (") and "truncated or damaged after its job wrote it" in bad


def test_snapshot_moves_the_dvc_record_as_yaml(tmp_path):
    """The record `dvc add` writes beside a folder moves to snapshots/ with its path rewritten, also
    where YAML quotes the name (the old text replace left such a record pointing nowhere)."""
    import yaml

    from repro.core.snapshot import move_record

    target = tmp_path / "results" / "smoke" / "true"
    target.mkdir(parents=True)
    beside = target.with_name("true.dvc")
    beside.write_text("outs:\n- md5: 0123abcd.dir\n  size: 3\n  nfiles: 1\n  hash: md5\n  path: 'true'\n")
    record = tmp_path / "snapshots" / "smoke" / "results.true.dvc"
    record.parent.mkdir(parents=True)
    move_record(beside, record, target)
    out = yaml.safe_load(record.read_text())["outs"]
    assert out == [{"md5": "0123abcd.dir", "size": 3, "nfiles": 1, "hash": "md5", "path": "../../results/smoke/true"}]
    assert not beside.exists()
    beside.write_text("outs:\n- md5: 0123abcd.dir\n  path: other\n")
    with pytest.raises(SystemExit, match=rf"{beside}: key 'outs': expected one entry with path 'true'"):
        move_record(beside, record, target)


def test_hash_seed_is_set_in_the_jobs_environment_not_by_the_job(monkeypatch):
    """PYTHONHASHSEED only acts at interpreter start: the rule's shell command sets it, seeding
    does not pretend to."""
    from repro.core.seeding import seed_everything

    monkeypatch.delenv("PYTHONHASHSEED", raising=False)
    seed_everything(3)
    assert "PYTHONHASHSEED" not in os.environ
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    out = subprocess.run([sys.executable, "-m", "snakemake", "--dry-run", "--printshellcmds", "--forceall",
                          "results/smoke/mem2evolve/data", "--config", "profile=smoke", "seed=5"],
                         cwd=rc.REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    # (a job forked from the warm server runs only if the server started with the same value)
    assert "PYTHONHASHSEED=5 " in out.stdout and "-m repro.core.warm repro.papers.mem2evolve.data" in out.stdout


def test_cosine_schedule_is_transformers_min_lr_cosine_with_warmup_one_step_ahead():
    """Why the hand-written schedule stays: transformers' cosine ends at 0 and its warm-up starts at
    lr 0; the min-lr variant matches ours after the warm-up (to 1e-12) and lags it one step during it."""
    import torch
    from transformers import get_cosine_with_min_lr_schedule_with_warmup

    from repro.models.training import cosine_lr

    steps, warmup = 40, 5
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    sched = get_cosine_with_min_lr_schedule_with_warmup(opt, warmup, steps, min_lr_rate=0.1)
    theirs = [sched.lr_lambdas[0](s) for s in range(steps + 1)]
    ours = [cosine_lr(s, steps, warmup) for s in range(steps + 1)]
    assert max(abs(a - b) for a, b in zip(ours[warmup:], theirs[warmup:])) < 1e-12
    assert ours[:warmup] == theirs[1:warmup + 1] and theirs[0] == 0.0
    assert ours[-1] == pytest.approx(0.1)


def _pins(text: str, package: str) -> set[str]:
    import re

    return set(re.findall(rf"(?<![\w-]){re.escape(package)}==([\w.]+)", text))


def test_torch_is_pinned_to_one_version_everywhere():
    files = ["Makefile", "pyproject.toml", "environment.yml", "workflow/envs/repro.yml", "README.md"]
    found = {f: _pins((rc.REPO_ROOT / f).read_text(), "torch") for f in files}
    assert all(found.values()), found  # every install path pins it
    assert len(set().union(*found.values())) == 1, found


def test_every_imported_package_is_pinned_where_it_is_used():
    """src imports: pinned dependencies; imports by tests alone: the `test` extra (not installed by
    `pip install .`)."""
    import ast
    import re
    import tomllib
    from importlib import metadata

    def imported(folder):
        names = set()
        for path in (rc.REPO_ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    names |= {a.name.split(".")[0] for a in node.names}
                elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    names.add(node.module.split(".")[0])
        local = {p.stem for p in (rc.REPO_ROOT / folder).glob("*.py")} | {"repro"}
        return {n for n in names if n not in sys.stdlib_module_names and n not in local}

    def norm(name):
        return re.sub(r"[-_.]+", "-", name).lower()

    project = tomllib.loads((rc.REPO_ROOT / "pyproject.toml").read_text())["project"]
    main = {norm(d.split("==")[0]) for d in project["dependencies"]}
    test = {norm(d.split("==")[0]) for d in project["optional-dependencies"]["test"]}
    assert all("==" in d for d in project["dependencies"] + project["optional-dependencies"]["test"])
    dists = {m: {norm(d) for d in ds} for m, ds in metadata.packages_distributions().items()}
    src, tests = imported("src"), imported("tests")
    assert not [m for m in src if not dists[m] & main], "imported by src/ but not pinned in dependencies"
    assert not [m for m in tests - src if not dists[m] & test], "imported by tests only, not in the test extra"
    assert not [m for m in tests - src if dists[m] & main], "imported by tests only, pinned in dependencies"
