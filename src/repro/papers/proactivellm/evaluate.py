"""Stage 4: one arm (one seed) of one task in the streaming loop, and its states against the oracle:
  - teacher-forced states (reference target prefix, every source prefix c = 1..S): each decision
    head's score and the oracle label 1[c >= oracle_t]; on validation they give the head's tau sweep
    (quantiles of its scores), on test its AUROC;
  - the READ/WRITE loop on test for the arm's policies (`evaluate.policies`): read-then-generate,
    wait-k (each k), fixed chunks (each chunk size), a decision head at each tau (V4: also its
    oracle-trained head), the oracle policy: quality, AL (hypothesis-length rate, and SimulEval's
    default reference-length rate) and LAAL;
  - for the SynthQA read-all diagnosis: read-then-generate quality by where the answer arrives
    (the first target token's oracle as a fraction of the source), per arm and for the offline
    backbone, and each arm's full-view validation NLL (from its train job).
The attention head's sign is the one with validation AUROC >= 0.5. Besides the metrics, items.npz
holds the per-item values behind every point and every state's scores (what analysis resamples).
Models run with eager attention (the attention head needs the probabilities).
"""
from __future__ import annotations

import numpy as np
import torch
from tqdm.auto import tqdm

from repro.core.io import read_metrics
from repro.core.stage import StageContext, main
from repro.models.causal_lm import device, load_checkpoint
from repro.papers.proactivellm.method import (attention_score, chunk_policy, entropy_score, learned_score,
                                              lm_forward, load_head, maxprob_score, oracle_policy,
                                              read_all_policy, threshold_policy, waitk_policy)
from repro.papers.proactivellm._metrics import auroc, from_sums, item_stats
from repro.papers.proactivellm._task import Task, batch
from repro.streaming.latency import al, al_reference, laal

# upper edges of the answer-position bins (fraction of the source read when the first target token
# is determined) for read-then-generate quality by position; the last bin runs to 1
POSITION_BINS = (0.5, 0.7, 0.9)
from repro.streaming.loop import stream


def chunks(items: list, size: int):
    for i in range(0, len(items), size):
        yield items[i:i + size]


@torch.no_grad()
def state_scores(lm, examples, tok, heads: list[str], attn_cfg: dict, head=None, offset: int = 0,
                 size: int = 256, reachable: bool = True) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Scores of every head, oracle labels and the example (index) of every state (example, source
    prefix c, target row). With
    `reachable`, only states whose reference prefix was already determined (c >= the oracle of the
    previous row): a reader that writes only determined tokens meets those; the others hand the
    model tokens it could not have known yet (e.g. QA's EOS row right after an unseen answer)."""
    scores, labels, owners = {h: [] for h in heads}, [], []
    for c in range(1, max(len(e.units) for e in examples) + 1):
        for idx in chunks([i for i, e in enumerate(examples) if len(e.units) >= c], size):
            chunk = [examples[i] for i in idx]
            b = batch(chunk, [[c] * e.rows for e in chunk], tok, offset)
            store = {}
            hook = lm.get_output_embeddings().register_forward_pre_hook(
                lambda mod, args: store.__setitem__("h", args[0]))
            try:
                out = lm_forward(lm, b["input_ids"], b["attention_mask"], b["position_ids"],
                                 output_attentions="attention" in heads)
            finally:
                hook.remove()
            sw = b["src_width"]
            valid = b["oracle"] >= 0
            if reachable:
                prev = torch.cat([torch.ones_like(b["oracle"][:, :1]), b["oracle"][:, :-1]], 1)
                valid &= c >= prev
            labels.append((c >= b["oracle"])[valid].numpy())
            owners.append(torch.tensor(idx)[:, None].expand_as(valid)[valid].numpy())
            valid = valid.to(out.logits.device)
            logits = out.logits[:, sw:]
            for h in heads:
                if h == "entropy":
                    s = entropy_score(logits)
                elif h == "maxprob":
                    s = maxprob_score(logits)
                elif h == "attention":
                    newest = torch.zeros(len(chunk), b["input_ids"].shape[1])
                    for i, e in enumerate(chunk):
                        ends = np.cumsum([0] + [len(u) for u in e.units])
                        newest[i, ends[max(0, c - attn_cfg["newest_units"])]:ends[c]] = 1
                    s = attention_score([a[:, :, sw:] for a in out.attentions], newest[:, None], attn_cfg["layers"])
                else:
                    s = learned_score(head, store["h"][:, sw:])
                scores[h].append(s[valid].float().cpu().numpy())
    return {h: np.concatenate(v) for h, v in scores.items()}, np.concatenate(labels), np.concatenate(owners)


def run_policy(lm, examples, tok, make_policy, cfg: dict, ev: dict, offset: int, need_attentions=False,
               need_hidden=False) -> tuple[dict, dict]:
    """One policy on the test items: its point (quality, AL, LAAL, where the first write falls) and
    the per-item values behind it (AL, LAAL, quality statistics), which analysis resamples."""
    hyps, als, als_ref, laals, first = [], [], [], [], []
    for chunk in chunks(examples, ev["batch_size"]):
        outs = stream(lm, [e.units for e in chunk], make_policy(chunk), start_id=tok.sep_id, eos_id=tok.eos_id,
                      max_len=cfg["max_len"], pad_id=tok.pad_id, eos_needs_full_source=cfg["eos_full_source"],
                      target_offset=offset, need_attentions=need_attentions, need_hidden=need_hidden)
        for e, o in zip(chunk, outs):
            hyps.append(tok.decode(o.tokens))
            als.append(al(o.delays, len(e.units)))
            als_ref.append(al_reference(o.delays, len(e.units), len(e.target)))
            laals.append(laal(o.delays, len(e.units), len(e.target)))
            first.append((o.delays[0] if o.delays else len(e.units)) / len(e.units))
    stats = item_stats(cfg["metric"], hyps, [e.reference for e in examples])
    point = {"quality": float(from_sums(cfg["metric"], stats.sum(0), len(examples))[0]),
             "al": float(np.mean(als)), "al_ref": float(np.mean(als_ref)), "laal": float(np.mean(laals)),
             "first_write_fraction": float(np.mean(first)), "n": len(examples)}
    return point, {"al": als, "al_ref": als_ref, "laal": laals, "quality": stats}


def by_position(metric: str, stats: np.ndarray, examples) -> list[float | None]:
    """Quality of the items in each answer-position bin (None for an empty bin)."""
    where = np.digitize([e.oracle[0] / len(e.units) for e in examples], POSITION_BINS)
    return [float(from_sums(metric, stats[where == b].sum(0), int((where == b).sum()))[0]) if (where == b).any()
            else None for b in range(len(POSITION_BINS) + 1)]


def chunk_rate(examples) -> float:
    """Target tokens per source unit (validation): the share of the target a fixed chunk is owed."""
    return sum(len(e.target) for e in examples) / sum(len(e.units) for e in examples)


def evaluate_arm(lm, head, task: Task, cfg: dict, ev: dict, policies: list[str], offset: int) -> tuple[dict, dict]:
    """The arm's metrics, and the arrays analysis resamples over test items: per point and item
    (AL, LAAL, quality statistics) and per teacher-forced state (test item, oracle label, scores)."""
    tok = task.tokenizer
    val = task.examples("validation", ev["calibration_examples"])
    test = task.examples("test", ev["test_examples"])
    heads = ["entropy", "maxprob", "attention"] + (["learned"] if head is not None else [])
    attn = ev["attention"]
    reachable = ev["auroc_states"] == "reachable"
    cal, cal_labels, cal_items = state_scores(lm, val, tok, heads, attn, head, offset, ev["batch_size"], reachable)
    st, labels, items = state_scores(lm, test[:ev["auroc_examples"]], tok, heads, attn, head, offset,
                                     ev["batch_size"], reachable)
    # the attention head's direction is not given by theory (attending to the newest units may mean
    # "still reading" or "just found it"): the sign with validation AUROC >= 0.5
    val_attention = auroc(cal["attention"], cal_labels, cal_items)
    signs = {h: 1.0 for h in heads}
    signs["attention"] = -1.0 if val_attention is not None and val_attention < 0.5 else 1.0
    cal = {h: signs[h] * v for h, v in cal.items()}
    st = {h: signs[h] * v for h, v in st.items()}

    def loop(make_policy, **kw):
        return run_policy(lm, test, tok, make_policy, cfg, ev, offset, **kw)

    points, per_item = [], []
    for name in tqdm(policies, desc="policies", mininterval=5):
        if name == "read_all":
            runs = [({}, loop(lambda c: read_all_policy()))]
        elif name == "waitk":
            runs = [({"k": k}, loop(lambda c, k=k: waitk_policy(k))) for k in ev["waitk"]]
        elif name == "chunk":
            rate = chunk_rate(val)
            runs = [({"chunk": n}, loop(lambda c, n=n, r=rate: chunk_policy(n, r))) for n in ev["chunks"]]
        elif name == "oracle":
            runs = [({}, loop(lambda c: oracle_policy([e.oracle for e in c])))]
        elif name in heads:  # a decision head over the tau sweep
            runs = []
            for q, tau in zip(ev["tau_quantiles"], np.quantile(cal[name], ev["tau_quantiles"])):
                policy = threshold_policy(name, float(tau), attn, head, signs[name])
                runs.append(({"quantile": q, "tau": float(tau)},
                             loop(lambda c, p=policy: p, need_attentions=name == "attention",
                                  need_hidden=name == "learned")))
        else:
            raise ValueError(f"policy {name!r} needs a trained decision head this arm does not have")
        for setting, (point, items_of_point) in runs:
            if name == "read_all":
                point["by_position"] = by_position(cfg["metric"], items_of_point["quality"], test)
            points.append({"policy": name, **setting, **point})
            per_item.append(items_of_point)
    metrics = {"auroc": {h: auroc(st[h], labels, items) for h in heads}, "attention_sign": signs["attention"],
               "attention_validation_auroc": val_attention, "sufficient_fraction": float(labels.mean()),
               "states": int(labels.size), "points": points}
    arrays = {"point_al": np.array([p["al"] for p in per_item], dtype=float).reshape(len(points), len(test)),
              "point_al_ref": np.array([p["al_ref"] for p in per_item], dtype=float).reshape(len(points), len(test)),
              "point_laal": np.array([p["laal"] for p in per_item], dtype=float).reshape(len(points), len(test)),
              "point_quality": np.stack([p["quality"] for p in per_item]),
              "state_item": items, "state_label": labels, **{f"state_{h}": v for h, v in st.items()}}
    return metrics, arrays


def run(ctx: StageContext) -> dict:
    """Every arm of one seed on one task that the job was given (`train_<arm>` inputs: all of them,
    or the A/A arm alone on an A/A seed; one job: the arms' evaluations are short next to the
    seconds each job spends importing transformers); per arm <arm>/items.npz. Also the offline
    backbone's read-then-generate point (the same in every seed's job: a few forwards)."""
    name, seed = ctx.wildcards["task"], int(ctx.wildcards["seed"])
    cfg, ev = ctx.params["tasks"][name], ctx.params["evaluate"]
    task = Task(ctx.inputs["data"], cfg["eos_full_source"])
    offset = ctx.params["streaming"]["target_offset"]
    test = task.examples("test", ev["test_examples"])
    lm = load_checkpoint(ctx.inputs["backbone"] / "model", attn_implementation="eager").to(device()).eval()
    point, items_of_point = run_policy(lm, test, task.tokenizer, lambda c: read_all_policy(), cfg, ev, offset)
    backbone = {**point, "by_position": by_position(cfg["metric"], items_of_point["quality"], test),
                "val_nll_full_view": read_metrics(ctx.inputs["backbone"])["val_nll_full_view"]}
    arms = {}
    for arm in sorted(a for a in ev["policies"] if f"train_{a}" in ctx.inputs):
        trained = ctx.inputs[f"train_{arm}"]
        lm = load_checkpoint(trained / "model", attn_implementation="eager").to(device()).eval()
        head = load_head(trained / "head")
        head = head.to(lm.device) if head is not None else None
        arms[arm], arrays = evaluate_arm(lm, head, task, cfg, ev, ev["policies"][arm], offset)
        arms[arm]["val_nll_full_view"] = read_metrics(trained)["val_nll_full_view"]
        (ctx.out / arm).mkdir()
        np.savez_compressed(ctx.out / arm / "items.npz", **arrays)
    return {"task": name, "seed": seed, "metric": cfg["metric"], "arms": arms, "backbone": backbone,
            "position_bins": list(POSITION_BINS)}


if __name__ == "__main__":
    main(run)
