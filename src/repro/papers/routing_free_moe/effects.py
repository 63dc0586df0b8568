"""The numbers that decide R1-R4, from the evaluate and threshold-sweep metrics, and report tables.

Pure functions over metrics dicts, so the decisions are unit-tested on constructed numbers.
"""
from __future__ import annotations

import math
import statistics

from repro.papers.routing_free_moe._arms import MAIN_ARMS
from repro.report.verdicts import fmt_number


def spread(values: list[float]) -> dict:
    """mean, sample std (0 for one seed), min, max."""
    return {"mean": statistics.mean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "min": min(values), "max": max(values), "n": len(values)}


def by_arm(runs: dict) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for r in sorted(runs.values(), key=lambda r: (r["arm"], r["seed"])):
        out.setdefault(r["arm"], []).append(r)
    return out


def monotone_away(thetas: list[float], losses: list[float], trained: float, tol: float) -> bool:
    """Loss never drops (beyond tol x the trained loss) while theta moves away from its trained value."""
    i0 = thetas.index(trained)
    slack = tol * losses[i0]
    left = losses[i0::-1]
    right = losses[i0:]
    return all(b >= a - slack for side in (left, right) for a, b in zip(side, side[1:]))


def threshold_sweep(sweep_runs: dict, trained: float, tol: float) -> dict:
    """Mean loss/density per theta over seeds; monotone away from the trained theta; largest jump."""
    thetas = sorted({float(t) for r in sweep_runs.values() for t in r["sweep"]})
    loss = [statistics.mean(r["sweep"][str(t)]["val_loss"] for r in sweep_runs.values()) for t in thetas]
    density = [statistics.mean(r["sweep"][str(t)]["density"] for r in sweep_runs.values()) for t in thetas]
    base = loss[thetas.index(trained)]
    return {"trained_theta": trained, "thetas": thetas, "val_loss": loss, "density": density,
            "loss_rise": [x - base for x in loss],
            "monotone": monotone_away(thetas, loss, trained, tol),
            "max_step_rel": max(abs(b - a) / base for a, b in zip(loss, loss[1:]))}


def mu_table(runs: dict, mu_arms: dict[float, str]) -> dict[str, dict]:
    """Per mu: expert-load and token-compute CV, dead experts, loss, density (means over seeds)."""
    arms = by_arm(runs)
    out = {}
    for mu, name in mu_arms.items():
        rs = arms[name]
        mean = lambda k: statistics.mean(r[k] for r in rs) if all(r[k] is not None for r in rs) else None  # noqa: E731
        out[str(mu)] = {"arm": name, "seeds": len(rs), "expert_load_cv": mean("expert_load_cv"),
                        "token_compute_cv": mean("token_compute_cv"), "dead_experts": mean("dead_experts"),
                        "val_loss": mean("val_loss"), "density": mean("density"), "rho_final": mean("rho_final")}
    return out


def _diff(a, b):
    return None if a is None or b is None else a - b


def decide(runs: dict, sweep_runs: dict, mu_arms: dict[float, str], rf: dict, r4_tolerance: float) -> dict:
    """Claim metrics: r1 (loss vs top-k), r2 (density at target), r3 (mu trade-off), r4 (theta sweep)."""
    arms = by_arm(runs)
    loss = {a: spread([r["val_loss"] for r in arms[a]]) for a in MAIN_ARMS}
    seeds_won = sum(r["val_loss"] < t["val_loss"] for r, t in zip(arms["rf"], arms["topk"]))
    rho = spread([r["rho_final"] for r in arms["rf"]])
    mus = mu_table(runs, mu_arms)
    lo, hi = mus[str(min(mu_arms))], mus[str(max(mu_arms))]
    return {
        "arms": {a: {"val_loss": loss[a], "bits_per_token": loss[a]["mean"] / math.log(2),
                     "active_ffn_params_per_layer": arms[a][0]["active_ffn_params_per_layer"],
                     "params_non_embedding": arms[a][0]["params_non_embedding"]} for a in MAIN_ARMS},
        "r1": {"rf_minus_topk_loss": loss["rf"]["mean"] - loss["topk"]["mean"],
               "rf_minus_dense_loss": loss["rf"]["mean"] - loss["dense"]["mean"],
               "seeds_rf_beats_topk": seeds_won, "seeds": len(arms["rf"]),
               "rf_mean_train_density": statistics.mean(r.get("rho_mean_train") or 0.0 for r in arms["rf"])},
        "r2": {"target": rf["density_target"], "rho_final": rho, "abs_gap": abs(rho["mean"] - rf["density_target"]),
               "rho_eval": statistics.mean(r["density"] for r in arms["rf"]),
               "lambda_final": statistics.mean(r["lambda_final"] for r in arms["rf"])},
        "r3": {"mu": mus, "mu_low": min(mu_arms), "mu_high": max(mu_arms),
               "expert_cv_mu0_minus_mu1": _diff(lo["expert_load_cv"], hi["expert_load_cv"]),
               "token_cv_mu1_minus_mu0": _diff(hi["token_compute_cv"], lo["token_compute_cv"])},
        "r4": threshold_sweep(sweep_runs, rf["threshold"], r4_tolerance),
    }



def report_tables(m: dict, runs: dict) -> str:
    """Markdown sections of the report: arms, density control, mu sweep, threshold sweep."""
    lines = ["## Pre-training arms (validation loss in nats per byte, mean ± std over seeds)", "",
             "| arm | active FFN params / token / layer | non-embedding params | val loss | min-max | bits/byte "
             "| seeds |",
             "|---|---|---|---|---|---|---|"]
    for a, v in m["arms"].items():
        s = v["val_loss"]
        lines.append(f"| {a} | {v['active_ffn_params_per_layer']:,.0f} | {v['params_non_embedding']:,} | "
                     f"{s['mean']:.4f} ± {s['std']:.4f} | {s['min']:.4f}-{s['max']:.4f} | "
                     f"{v['bits_per_token']:.3f} | {s['n']} |")
    r1 = m["r1"]
    lines += ["", f"Routing-free minus top-k: {r1['rf_minus_topk_loss']:+.4f} nats "
              f"(routing-free lower on {r1['seeds_rf_beats_topk']} of {r1['seeds']} seeds); "
              f"routing-free minus dense: {r1['rf_minus_dense_loss']:+.4f}. Active parameters are matched at the "
              f"target density; averaged over training the routing-free arm ran at density "
              f"{r1['rf_mean_train_density']:.3f} (every expert starts active until lambda grows).", "",
              f"## Density control (target rho* = {m['r2']['target']})", "",
              "| run | rho_final (train, last 10% of steps) | density on validation | lambda_final | dead experts |",
              "|---|---|---|---|---|"]
    for key, r in sorted(runs.items()):
        if r["kind"] == "routing_free":
            lines.append(f"| {key} | {fmt_number(r['rho_final'], '.4f')} | {fmt_number(r['density'], '.4f')} | "
                         f"{fmt_number(r['lambda_final'], '.3g')} | {r['dead_experts']} / {r['experts_total']} |")
    lines += ["", "## mu sweep: expert balance (mu = 1) vs token balance (mu = 0)", "",
              "| mu | arm | expert-load CV | token-compute CV | dead experts | val loss | density | seeds |",
              "|---|---|---|---|---|---|---|---|"]
    for mu, v in m["r3"]["mu"].items():
        lines.append(f"| {mu} | {v['arm']} | {fmt_number(v['expert_load_cv'], '.4f')} | "
                     f"{fmt_number(v['token_compute_cv'], '.4f')} | {fmt_number(v['dead_experts'], '.1f')} | "
                     f"{fmt_number(v['val_loss'], '.4f')} | {fmt_number(v['density'], '.4f')} | {v['seeds']} |")
    r4 = m["r4"]
    lines += ["", f"## Inference threshold sweep (trained at theta = {r4['trained_theta']}, mean over seeds)", "",
              "| theta | val loss | change vs trained theta | density |", "|---|---|---|---|"]
    for t, lo, d, dens in zip(r4["thetas"], r4["val_loss"], r4["loss_rise"], r4["density"]):
        lines.append(f"| {t} | {lo:.4f} | {d:+.4f} | {dens:.3f} |")
    return "\n".join(lines) + "\n"
