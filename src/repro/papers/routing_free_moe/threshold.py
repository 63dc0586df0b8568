"""Stage 3: the inference threshold sweep. Each trained routing-free model runs at the thetas where its
density is a multiple (`density_factors`) of the density at its trained theta: the quantiles of its own
scores on training windows, so every swept theta moves the density by a known amount (a fixed theta
grid moves it by different amounts in different models). The loss is measured on the validation windows."""
from repro.core.stage import StageContext, main
from repro.data.corpus import load_tokens, random_windows, validation_windows
from repro.models.causal_lm import device
from repro.papers.routing_free_moe.method import (layer_scores, load_model, routing_stats, set_threshold,
                                                  thresholds_for_density)


def run(ctx: StageContext) -> dict:
    ev, th = ctx.params["evaluate"], ctx.params["threshold"]
    data = ctx.inputs["data"]
    batches = validation_windows(data, ev["windows"], ev["seq_len"], ev["batch_size"], device())
    # the thetas come from training text, never from the windows the loss is measured on
    calib = random_windows(load_tokens(data, "train"), th["calibration_windows"], ev["seq_len"], ctx.seed)
    calib = [calib[i:i + ev["batch_size"]].to(device()) for i in range(0, len(calib), ev["batch_size"])]
    runs = {}
    for key, path in sorted(ctx.inputs.items()):
        if key == "data":
            continue
        model, arm = load_model(path / "model")
        thetas = thresholds_for_density(layer_scores(model, calib), arm["threshold"], th["density_factors"])
        sweep = {}
        for factor, theta in thetas.items():
            set_threshold(model, theta)
            s = routing_stats(model, batches)
            sweep[str(float(factor))] = {"theta": theta, **{k: s[k] for k in ("val_loss", "density", "window_loss")}}
        runs[key] = {"trained_theta": arm["threshold"], "sweep": sweep}
    return {"runs": runs}


if __name__ == "__main__":
    main(run)
