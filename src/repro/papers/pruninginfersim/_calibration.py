"""What the families learn from data: Wanda input norms, block influence, router training and
router thresholds. Statistics are read with forward hooks, so the decoder itself stays plain."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from repro.models.decoder import Linear


def run_hooked(model, batches: list[torch.Tensor], hooks: list) -> None:
    """Forward every calibration batch with `hooks` attached; detach them whatever happens."""
    try:
        for batch in batches:
            model(batch)
    finally:
        for h in hooks:
            h.remove()


@torch.no_grad()
def input_norms(model, batches: list[torch.Tensor]) -> dict[str, torch.Tensor]:
    """Wanda statistics: ||X_j||_2 over calibration tokens for every linear's input column j."""
    sums: dict[str, torch.Tensor] = {}

    def hook(mod, args):
        x = args[0].reshape(-1, args[0].shape[-1]).float()
        sums[mod.name] = sums.get(mod.name, 0) + x.pow(2).sum(0)

    run_hooked(model, batches, [m.register_forward_pre_hook(hook) for m in model.modules()
                                if isinstance(m, Linear) and m.name != "lm_head"])
    return {name: s.sqrt() for name, s in sums.items()}


@torch.no_grad()
def block_influence(model, batches: list[torch.Tensor]) -> dict[str, list[float]]:
    """Mean 1 - cos(h_in, h_out) per sublayer: low = the sublayer barely changes the residual.

    h_in is what the sublayer's norm receives, h_out = h_in + the sublayer's output."""
    sums: dict[tuple[int, str], float] = {}

    def watch(i: int, kind: str, norm, sublayer) -> list:
        seen = {}

        def before(_, args):
            seen["h"] = args[0]

        def after(_, args, out):
            h = seen["h"]
            delta = out[0] if kind == "attn" else out  # attention also returns its cache
            cos = F.cosine_similarity(h.float(), (h + delta).float(), dim=-1)
            sums[i, kind] = sums.get((i, kind), 0.0) + float((1 - cos).sum())

        return [norm.register_forward_pre_hook(before), sublayer.register_forward_hook(after)]

    run_hooked(model, batches, [hk for i, b in enumerate(model.blocks)
                                for hk in watch(i, "attn", b.attn_norm, b.attn) + watch(i, "mlp", b.mlp_norm, b.mlp)])
    tokens = sum(batch.numel() for batch in batches)
    return {kind: [sums[i, kind] / tokens for i in range(len(model.blocks))] for kind in ("attn", "mlp")}


def train_routers(model, next_batch, *, s: float, steps: int, lr: float, penalty: float) -> list[dict]:
    """Routers only (base frozen): LM loss + penalty * (mean execution - (1 - s))^2, STE gates."""
    for name, p in model.named_parameters():
        p.requires_grad = ".router." in name
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    model.train()
    history = []
    for step in range(steps):
        batch = next_batch(step)
        lm = model.loss(batch)
        mean_exec = torch.stack([b.exec_prob for b in model.blocks]).mean()
        loss = lm + penalty * (mean_exec - (1 - s)) ** 2
        opt.zero_grad()
        loss.backward()
        opt.step()
        history.append({"lm_loss": lm.item(), "mean_exec": mean_exec.item()})
    model.eval()
    for p in model.parameters():
        p.requires_grad = False
    return history


@torch.no_grad()
def calibrate_router_thresholds(model, batches, rates: list[float]) -> None:
    """Latency runs: untrained routers, so set layer i's threshold to execute a rates[i] share."""
    if len(rates) != len(model.blocks):
        raise ValueError(f"{len(rates)} execution rates for {len(model.blocks)} layers")
    hidden = [model.embed(batch) for batch in batches]
    ropes = [model.rotary(torch.arange(b.shape[1], device=b.device).expand(b.shape), h.dtype)
             for b, h in zip(batches, hidden)]
    for block, rate in zip(model.blocks, rates):  # layer by layer: a layer's input depends on the thresholds before it
        probs = torch.cat([block.router.prob(h).flatten() for h in hidden]).float()
        block.router.threshold.fill_(float(torch.quantile(probs, 1 - rate)))
        hidden = [block(h, rope)[0] for h, rope in zip(hidden, ropes)]
