"""Stage 5: the compute costs the simulated stream clock runs on, measured on the device (the CPU
here): one reasoning token decoded through the dual KV cache, and one frame group encoded and
prefilled into it at each frame rate of the sweep. Weights do not change these costs, so the model
is built at random init from the model params, at the size the arms train. Every cost is timed in
interleaved pairs against the decode step (repro.core.timing.interleaved), which is also timed
against an identical copy of itself (the A/A control); the caches are reset after every call, so
each call sees the same context (`context_seconds` of video at the data's frame rate and
`reasoning_tokens` of reasoning). A timed call runs its operation `repeat` times back to back (a
single decode step of this model is about a millisecond, too short to time alone); costs are per
operation."""
import copy

import torch

from repro.core.stage import StageContext, main
from repro.core.timing import AA, interleaved
from repro.papers.tays.method import build_model, codec_for
from repro.streaming.cache import LayerDualCache


@torch.no_grad()
def primed_cache(model, lat: dict, fps: int, gen: torch.Generator, device: str) -> LayerDualCache:
    """A dual cache holding a prompt, `context_seconds` of video and `reasoning_tokens` of reasoning."""
    size = model.config["image_size"]
    cache = LayerDualCache()
    n, r = lat["prompt_tokens"], lat["reasoning_tokens"]
    ids = lambda k: torch.randint(0, 32, (1, k), generator=gen).to(device)  # noqa: E731
    at = lambda a, b: torch.arange(a, b, device=device)[None]  # noqa: E731
    cache.feed_source(model, model.embed(ids(n)), at(0, n))
    frames = (torch.rand(lat["context_seconds"] * fps, 3, size, size, generator=gen) * 2 - 1).to(device)
    vis = model.visual_tokens(frames).reshape(1, -1, model.decoder.config["hidden_size"])
    cache.feed_source(model, vis, at(n, n + vis.shape[1]))
    cache.feed_target(model, model.embed(ids(r)), at(0, r), cache.source_len)
    return cache


def run(ctx: StageContext) -> dict:
    p, lat = ctx.params, ctx.params["latency"]
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(ctx.seed)
    model = build_model(p["model"], codec_for(p)).eval().to(device)
    gen = torch.Generator().manual_seed(ctx.seed)
    cache = primed_cache(model, lat, p["data"]["fps"], gen, device)
    with torch.no_grad():
        token = model.embed(torch.tensor([[5]], device=device))
    position = torch.tensor([[lat["reasoning_tokens"]]], device=device)
    size, dim = model.config["image_size"], model.decoder.config["hidden_size"]

    def decode(m):
        def call():
            saved = cache.target
            with torch.no_grad():
                for _ in range(lat["repeat"]):
                    cache.feed_target(m, token, position, cache.source_len)
                    cache.target = saved
        return call

    def prefill(frames_per_group: int):
        frames = (torch.rand(frames_per_group, 3, size, size, generator=gen) * 2 - 1).to(device)

        def call():
            saved, start = cache.source, cache.source_len
            with torch.no_grad():
                for _ in range(lat["repeat"]):
                    vis = model.visual_tokens(frames).reshape(1, -1, dim)
                    cache.feed_source(model, vis, torch.arange(start, start + vis.shape[1], device=device)[None])
                    cache.source = saved
        return call

    variants = {AA: decode(copy.deepcopy(model))}
    for fps in lat["fps"]:
        variants[f"prefill_fps{fps}"] = prefill(fps)  # one group = one second of frames
    pairs = interleaved(decode(model), variants, pairs=lat["pairs"], warmup=lat["warmup"], flush_mb=lat["flush_mb"],
                        device=device)
    return {"pairs": pairs, "repeat": lat["repeat"], "fps": lat["fps"], "device": device,
            "threads": torch.get_num_threads()}


if __name__ == "__main__":
    main(run)
