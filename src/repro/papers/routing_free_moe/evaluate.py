"""Stage 4: every trained model on the same held-out windows: loss, and for routing-free models who is
active (density, expert-load and per-token-compute spread, dead experts); training curves collected."""
import statistics

from repro.core.io import atomic_write_json, read_json, read_metrics
from repro.core.stage import StageContext, main
from repro.data.corpus import validation_windows
from repro.models.causal_lm import device
from repro.papers.routing_free_moe.method import active_ffn_params, load_model, routing_stats


def run(ctx: StageContext) -> dict:
    ev = ctx.params["evaluate"]
    batches = validation_windows(ctx.inputs["data"], ev["windows"], ev["seq_len"], ev["batch_size"], device())
    runs, curves, loads = {}, {}, {}
    for key, path in sorted(ctx.inputs.items()):
        if key == "data":
            continue
        model, arm = load_model(path / "model")
        stats = routing_stats(model, batches)
        if "expert_load" in stats:
            loads[key] = stats.pop("expert_load")
        train = read_metrics(path)
        runs[key] = {**{k: train.get(k) for k in ("arm", "kind", "seed", "mu", "rho_final", "lambda_final",
                                                    "params_non_embedding", "active_ffn_params_per_layer")},
                     **stats}
        curves[key] = read_json(path / "history.json")
        rho = curves[key].get("rho")
        if rho:  # the density actually spent in training, hence the FFN compute (R1 at matched compute)
            runs[key]["rho_mean_train"] = statistics.mean(rho)
        cfg = model.config
        runs[key]["active_ffn_params_train"] = active_ffn_params(
            arm, cfg.hidden_size, cfg.intermediate_size, statistics.mean(rho) if rho else None)
    atomic_write_json(ctx.out / "curves.json", curves)
    atomic_write_json(ctx.out / "expert_load.json", loads)
    return {"runs": runs}


if __name__ == "__main__":
    main(run)
