"""Stage 3: the inference threshold sweep: the trained routing-free models run at other thetas."""
from repro.core.stage import StageContext, main
from repro.data.corpus import validation_windows
from repro.models.causal_lm import device
from repro.papers.routing_free_moe.method import load_model, routing_stats, set_threshold


def run(ctx: StageContext) -> dict:
    ev = ctx.params["evaluate"]
    batches = validation_windows(ctx.inputs["data"], ev["windows"], ev["seq_len"], ev["batch_size"], device())
    runs = {}
    for key, path in sorted(ctx.inputs.items()):
        if key == "data":
            continue
        model, arm = load_model(path / "model")
        sweep = {}
        for theta in ctx.params["threshold"]["values"]:
            set_threshold(model, theta)
            s = routing_stats(model, batches)
            sweep[str(float(theta))] = {k: s[k] for k in ("val_loss", "density", "window_loss")}
        runs[key] = {"trained_theta": arm["threshold"], "sweep": sweep}
    return {"runs": runs}


if __name__ == "__main__":
    main(run)
