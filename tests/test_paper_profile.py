"""The `paper` profile's code path (hub names, load_dataset, from_pretrained, flash-attn fallback)
run through the real stages on a tiny local checkpoint, a local tokenizer and a local text file."""
import copy
import json
import warnings

import pytest
import torch
import yaml

from conftest import run_stage

from repro.core import config as rc


@pytest.fixture
def paper_setup(tmp_path):
    from transformers import LlamaForCausalLM

    from conftest import save_bpe_tokenizer, tiny_llama_config

    text = "\n".join(f"def f{i}(x):\n    return x * {i} + {i % 7}" for i in range(400))
    (tmp_path / "train.txt").write_text(text)
    (tmp_path / "valid.txt").write_text(text[::-1])
    vocab = save_bpe_tokenizer([text], tmp_path / "tok")
    torch.manual_seed(0)
    model = LlamaForCausalLM(tiny_llama_config(vocab_size=vocab))
    model.save_pretrained(tmp_path / "ckpt")

    params = copy.deepcopy(rc.load_paper("pruninginfersim"))
    sec = params["paper"]
    # Same keys and code as the published setting; only names point at local files, sizes shrink.
    sec["families"] = ["static_depth", "dynamic_depth"]
    sec["data"] = {"source": {"kind": "hub", "load": {"path": "text", "data_files": {
        "train": str(tmp_path / "train.txt"), "validation": str(tmp_path / "valid.txt")}}},
        "tokenizer": str(tmp_path / "tok")}
    for name in ("quality_model", "latency_model"):
        sec[name] = {"pretrained": str(tmp_path / "ckpt"), "dtype": "bfloat16",
                     "attn_implementation": "flash_attention_2"}
    sec["train"].update(steps=0, batch_size=2, seq_len=32)
    sec["prune"].update(sparsities=[0.5], calibration={"batches": 1, "batch_size": 2, "seq_len": 32},
                        attn_block=8, lowrank_rank_multiple=8)
    sec["prune"]["router"].update(steps=2, batch_size=2, seq_len=32)
    sec["evaluate"] = {"windows": 4, "seq_len": 32, "batch_size": 2}
    sec["latency"].update(cells=["prefill_b1_l16", "decode_b1_l16"], seeds=[0], all_seeds_in=[],
                          sweep_in=["prefill_b1_l16", "decode_b1_l16"], warmup=0, pairs={"default": 2},
                          flush_mb=1, calibration={"batches": 1, "batch_size": 2, "seq_len": 16})
    sec["analysis"].update(frontier={"phase": "prefill", "batch": 1, "seq": 16},
                           bound={"phase": "decode", "batch": 1, "seq": 16})
    path = tmp_path / "pruninginfersim.yaml"
    path.write_text(yaml.safe_dump(params))
    return tmp_path, path


def test_paper_profile_chain_on_local_checkpoint(paper_setup):
    from repro.papers.pruninginfersim import analysis, data, evaluate, latency, prune, train

    tmp, path = paper_setup
    r = tmp / "results"
    d = run_stage("pruninginfersim", data, path, r / "data", ["data"])
    assert d["vocab_size"] > 256 and d["train_tokens"] > 0  # the BPE tokenizer, not bytes
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t = run_stage("pruninginfersim", train, path, r / "train", ["quality_model", "train", "evaluate"], [("data", r / "data")])
    assert any("flash_attention_2 requested" in str(w.message) for w in caught)  # no GPU: sdpa
    assert t["steps"] == 0 and t["val_loss"] > 0
    saved = json.loads((r / "train" / "model" / "config.json").read_text())
    assert saved["dtype"] == "bfloat16"
    inputs = [("latency", r / "latency"), ("data", r / "data"), ("train", r / "train")]
    for fam, seed in (("static_depth", 0), ("dynamic_depth", 0), ("dynamic_depth", 1)):
        job = [("family", fam), ("seed", seed)]
        pruned, out = r / "prune" / fam / f"seed{seed}", r / "evaluate" / fam / f"seed{seed}"
        run_stage("pruninginfersim", prune, path, pruned, ["prune"], [("data", r / "data"), ("model", r / "train")], job)
        ev = run_stage("pruninginfersim", evaluate, path, out, ["prune", "evaluate"],
                       [("data", r / "data"), ("model", r / "train"), ("pruned", pruned)], job)
        assert ev["sparsities"]["0.5"]["quality_loss"] == pytest.approx(
            (ev["sparsities"]["0.5"]["val_loss"] - ev["dense"]["val_loss"]) / ev["dense"]["val_loss"])
        inputs.append((f"evaluate_{fam}_seed{seed}", out))
    lat = run_stage("pruninginfersim", latency, path, r / "latency", ["families", "latency_model", "latency", "prune"],
                    [(n, p) for n, p in inputs if n.startswith("evaluate_dynamic_depth")])  # measured rates
    assert set(lat["families"]) == {"static_depth", "dynamic_depth"} and set(lat["control"]) == {"prefill_b1_l16", "decode_b1_l16"}
    m = run_stage("pruninginfersim", analysis, path, r / "analysis", ["families", "analysis"], inputs)
    assert m["p3"]["measured"] == {"static_depth": ["removed"], "dynamic_depth": ["M"]}
    assert (r / "analysis" / "frontier.png").stat().st_size > 1000
