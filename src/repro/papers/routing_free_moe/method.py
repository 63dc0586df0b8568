"""Routing-Free MoE: experts that switch themselves on, balanced by one adaptive loss.

Read top to bottom:
1. `RoutingFreeMoE` replaces a Llama MLP. Expert e owns a low-rank gate A_e (r x d); its score is
   s_e(x) = gamma_e * ||A_e x|| - b_e and it is active iff s_e >= theta. There is no router, no
   softmax, no top-k and no fixed number of experts per token. The output is the sum over active
   experts of s_e(x) * FFN_e(x), FFN_e(x) = W_down,e [act(B_e A_e x) * W_up,e x].
2. `balancing_losses` balances over all layers x experts at once: L_E (expert balance) and L_T
   (token balance) on M = 1[s >= theta] and P = ReLU(s with inactive experts' scores set to -inf), so
   P counts active experts only, as the public RoutingFreeMaskedMoE does; `RoutingFreeAux` mixes them
   with mu and scales by lambda, which `AdaptiveLambda` moves after each step towards the target density.
3. `calibrate_biases` starts training at the target density (b_e from score quantiles on a training
   batch), so the arm's active compute matches the baselines' from step 1, not only at the end;
   `thresholds_for_density` picks the inference thetas of the robustness sweep the same way.
4. `TopKMoE` is the baseline (softmax router, top-k, Switch load-balancing loss); `build_model`
   swaps either into the shared Llama model, `active_ffn_params` counts what a token touches.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from repro.models import checkpoint
from repro.models.causal_lm import device


def _normal(*shape: int, std: float = 0.02) -> nn.Parameter:
    return nn.Parameter(torch.randn(*shape) * std)


class RoutingFreeMoE(nn.Module):
    def __init__(self, hidden: int, experts: int, expert_size: int, rank: int, threshold: float):
        super().__init__()
        self.gate_a = _normal(experts, rank, hidden)  # A_e: the expert's own low-rank gate
        # B_e lifts the gate to the FFN width. std 1/sqrt(r) gives B_e A_e x the scale of a dense gate
        # projection W_gate x (std 0.02 over d inputs); at 0.02 the two small factors left deep experts inert.
        self.gate_b = _normal(experts, expert_size, rank, std=rank ** -0.5)
        self.up = _normal(experts, expert_size, hidden)
        self.down = _normal(experts, hidden, expert_size)
        self.scale = nn.Parameter(torch.ones(experts))  # gamma_e
        self.bias = nn.Parameter(torch.zeros(experts))  # b_e
        self.threshold = threshold  # a plain attribute: the inference sweep changes it in place
        self.last_scores: torch.Tensor | None = None  # [tokens, experts], read by the balancing loss

    def scores(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Gate activations A_e x [..., E, r] and scores s_e(x) [..., E]."""
        experts, rank, hidden = self.gate_a.shape
        # one matmul over all experts' stacked gates (the same sums as a per-expert product)
        h = F.linear(x, self.gate_a.reshape(experts * rank, hidden)).unflatten(-1, (experts, rank))
        return h, self.scale * h.norm(dim=-1) - self.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, s = self.scores(x)
        self.last_scores = s.reshape(-1, s.shape[-1])
        # Inactive experts get weight 0 (and no gradient from the LM loss). Every expert is computed
        # and masked: the same numbers as gathering the active tokens, and faster at this size on CPU.
        weight = torch.where(s >= self.threshold, s, torch.zeros_like(s))
        experts, size, hidden = self.up.shape
        inner = F.silu(torch.einsum("...er,eir->...ei", h, self.gate_b))
        up = F.linear(x, self.up.reshape(experts * size, hidden)).unflatten(-1, (experts, size))
        inner = inner * up * weight.unsqueeze(-1)
        return F.linear(inner.flatten(-2), self.down.transpose(0, 1).reshape(hidden, experts * size))


def balancing_losses(scores: torch.Tensor, threshold: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """L_E, L_T and density rho from the scores s [tokens, layers*experts].

    Inactive experts' scores become -inf before the ReLU (the public code's masked scores), so P is s
    where the expert is active and 0 elsewhere: a sub-threshold positive score neither counts in P nor
    gets pushed down by the loss. ReLU(-inf) = 0 with zero gradient, so nothing turns NaN."""
    active = scores >= threshold
    m = active.to(scores.dtype)  # no gradient through the indicator: P carries it
    p = F.relu(scores.masked_fill(~active, float("-inf")))
    l_e = (m.mean(0) * p.mean(0)).mean()  # per (layer, expert): how often active x how strongly
    l_t = (m.mean(1) * p.mean(1)).mean()  # per token: how many experts x how strongly
    return l_e, l_t, m.mean()


class AdaptiveLambda:
    """lambda <- min(1, lambda * (1 + eta)^sign(rho - rho*)): up when too dense, down when too sparse."""

    def __init__(self, initial: float, eta: float, target: float):
        self.value, self.eta, self.target = initial, eta, target

    def update(self, rho: float) -> float:
        sign = (rho > self.target) - (rho < self.target)
        self.value = min(1.0, self.value * (1 + self.eta) ** sign)
        return self.value


def _layers_of(model, cls) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, cls)]


class RoutingFreeAux:
    """The unified balancing loss over every layer x expert, and its adaptive weight.

    `loss()` runs after the forward pass (it reads the scores each layer kept), `after_step()` after
    the optimizer step; `history` keeps rho(t) and lambda(t) for the figures.
    """

    def __init__(self, model, threshold: float, mu: float, lambda0: float, eta: float, target: float):
        self.layers = _layers_of(model, RoutingFreeMoE)
        self.threshold, self.mu = threshold, mu
        self.lam = AdaptiveLambda(lambda0, eta, target)
        self.history: dict[str, list[float]] = {"rho": [], "lambda": [], "l_e": [], "l_t": []}
        self._rho = 0.0

    def loss(self) -> torch.Tensor:
        l_e, l_t, rho = balancing_losses(torch.cat([layer.last_scores for layer in self.layers], -1),
                                         self.threshold)
        self._rho = rho.item()
        self.history["l_e"].append(l_e.item())
        self.history["l_t"].append(l_t.item())
        return self.lam.value * (self.mu * l_e + (1 - self.mu) * l_t)

    def after_step(self, step: int) -> None:
        self.history["rho"].append(self._rho)
        self.history["lambda"].append(self.lam.update(self._rho))


@torch.no_grad()
def calibrate_biases(model, batch: torch.Tensor, density: float) -> None:
    """Set every b_e so that expert e is active on `density` of `batch`'s tokens: b_e = (1 - density)
    quantile of gamma_e * ||A_e x|| minus theta. With zero biases every expert starts active (||A_e x||
    ~ 1.3 >> theta 0.2 at init): the first mini runs spent ~70 steps at density 1 until lambda grew,
    0.44 on average over training against the baselines' 0.25. Layer by layer, because layer l's
    biases change layer l+1's inputs."""
    for layer in _layers_of(model, RoutingFreeMoE):
        model(input_ids=batch)
        raw = (layer.last_scores + layer.bias).float()  # gamma_e * ||A_e x||, [tokens, experts]
        layer.bias.copy_(torch.quantile(raw, 1 - density, dim=0) - layer.threshold)


@torch.no_grad()
def layer_scores(model, batches: list[torch.Tensor]) -> torch.Tensor:
    """Every routing-free score [tokens, layers*experts] of the model on `batches`."""
    layers = _layers_of(model, RoutingFreeMoE)
    out = []
    for b in batches:
        model(input_ids=b)
        out.append(torch.cat([l.last_scores for l in layers], -1).float().cpu())
    return torch.cat(out)


def thresholds_for_density(scores: torch.Tensor, trained: float, factors: list[float]) -> dict[float, float]:
    """factor -> the theta at which the density (share of scores >= theta) is `factor` times the density
    at the trained theta: the score quantile. Factor 1 keeps the trained theta itself."""
    flat = scores.flatten().numpy()  # numpy: torch.quantile refuses more than 2**24 values
    base = float((flat >= trained).mean())
    out = {}
    for f in factors:
        if f == 1:
            out[f] = trained
        elif not 0 < f * base < 1:
            raise ValueError(f"density factor {f} x trained density {base:.3f} is not a density in (0, 1)")
        else:
            out[f] = float(np.quantile(flat, 1 - f * base))
    return out


class TopKMoE(nn.Module):
    """Baseline: softmax router, the k best experts per token (weights renormalised), SwiGLU experts."""

    def __init__(self, hidden: int, experts: int, expert_size: int, k: int):
        super().__init__()
        self.router = nn.Linear(hidden, experts, bias=False)
        nn.init.normal_(self.router.weight, std=0.02)
        self.gate = _normal(experts, expert_size, hidden)
        self.up = _normal(experts, expert_size, hidden)
        self.down = _normal(experts, hidden, expert_size)
        self.k = k
        self.last_probs: torch.Tensor | None = None
        self.last_choice: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, x.shape[-1])
        probs = self.router(flat).softmax(-1)
        weight, choice = probs.topk(self.k, dim=-1)
        weight = weight / weight.sum(-1, keepdim=True)
        self.last_probs, self.last_choice = probs, choice
        out = torch.zeros_like(flat)
        for e in range(self.gate.shape[0]):  # only the tokens sent to expert e
            token, slot = (choice == e).nonzero(as_tuple=True)
            xe = flat[token]
            ye = (F.silu(xe @ self.gate[e].T) * (xe @ self.up[e].T)) @ self.down[e].T
            out.index_add_(0, token, ye * weight[token, slot].unsqueeze(-1))
        return out.reshape(x.shape)


class TopKAux:
    """Switch-Transformer load balancing, E * sum_e f_e P_e, averaged over layers, times `coef`."""

    def __init__(self, model, coef: float):
        self.layers = _layers_of(model, TopKMoE)
        self.coef = coef
        self.history: dict[str, list[float]] = {}

    def loss(self) -> torch.Tensor:
        total = 0.0
        for layer in self.layers:
            experts = layer.last_probs.shape[-1]
            f = F.one_hot(layer.last_choice, experts).float().sum(1).mean(0) / layer.k
            total = total + experts * (f * layer.last_probs.mean(0)).sum()
        return self.coef * total / len(self.layers)

    def after_step(self, step: int) -> None:
        pass


def make_ffn(arm: dict, hidden: int) -> nn.Module:
    if arm["kind"] == "topk":
        return TopKMoE(hidden, arm["experts"], arm["expert_size"], arm["k"])
    return RoutingFreeMoE(hidden, arm["experts"], arm["expert_size"], arm["rank"], arm["threshold"])


def swap_mlps(model, arm: dict):
    """Each layer's MLP replaced by the arm's FFN (dense: unchanged)."""
    if arm["kind"] != "dense":
        for layer in model.model.layers:
            layer.mlp = make_ffn(arm, model.config.hidden_size).to(model.dtype)
    return model


def build_model(model_spec: dict, arm: dict, vocab_size: int | None = None):
    """The shared Llama model (fresh from sizes, or `pretrained`) with the arm's FFNs."""
    from repro.models.causal_lm import build_causal_lm

    return swap_mlps(build_causal_lm(model_spec, vocab_size=vocab_size), arm)


def make_aux(model, arm: dict):
    """The arm's auxiliary loss (None for dense)."""
    if arm["kind"] == "topk":
        return TopKAux(model, arm["aux_coef"])
    if arm["kind"] == "routing_free":
        return RoutingFreeAux(model, arm["threshold"], arm["mu"], arm["lambda0"], arm["eta"],
                              arm["density_target"])
    return None


def set_threshold(model, theta: float) -> None:
    for layer in _layers_of(model, RoutingFreeMoE):
        layer.threshold = theta


def active_ffn_params(arm: dict, hidden: int, intermediate: int, density: float | None = None) -> float:
    """FFN weights one token touches per layer. Routing-free: every gate A_e is needed for the scores,
    B_e/up/down of the density x E active experts (density: rho* unless a measured one is given);
    top-k: router + k experts."""
    if arm["kind"] == "dense":
        return 3 * hidden * intermediate
    if arm["kind"] == "topk":
        return hidden * arm["experts"] + arm["k"] * 3 * hidden * arm["expert_size"]
    e, i, r = arm["experts"], arm["expert_size"], arm["rank"]
    rho = arm["density_target"] if density is None else density
    return e * r * hidden + rho * e * (r * i + 2 * hidden * i)


@torch.no_grad()
def routing_stats(model, batches: list[torch.Tensor]) -> dict:
    """Validation loss (overall and per window: the items the claims' intervals resample) and, for
    routing-free layers, who is active: density, load and compute spread."""
    layers = _layers_of(model, RoutingFreeMoE)
    windows, masks = [], []
    for b in batches:
        logits = model(input_ids=b).logits[:, :-1].float()
        nll = F.cross_entropy(logits.flatten(0, 1), b[:, 1:].flatten(), reduction="none")
        windows += nll.view(b.shape[0], -1).mean(1).tolist()
        if layers:
            masks.append(torch.cat([(l.last_scores >= l.threshold) for l in layers], -1).float())
    val = sum(windows) / len(windows)  # windows have equal length: the token-weighted mean
    stats = {"val_loss": val, "val_bits_per_token": val / math.log(2), "window_loss": windows}
    if layers:
        m = torch.cat(masks)  # [tokens, layers * experts]
        load, per_token = m.mean(0), m.sum(1)
        stats.update(density=m.mean().item(), expert_load_cv=_cv(load), token_compute_cv=_cv(per_token),
                     dead_experts=int((load == 0).sum()), experts_total=int(load.numel()),
                     mean_active_per_layer=per_token.mean().item() / len(layers),
                     expert_load=load.tolist())
    return stats


def _cv(v: torch.Tensor) -> float | None:
    """Coefficient of variation std/mean (None when nothing is active: undefined)."""
    mean = v.mean().item()
    return v.std(unbiased=False).item() / mean if mean > 0 else None


def save_model(model, arm: dict, path: Path | str) -> None:
    """The Llama backbone's config with the arm (the FFN) under `arm`, and the weights."""
    checkpoint.save(path, {**model.config.to_dict(), "arm": arm}, model.state_dict())


def load_model(path: Path | str):
    """A saved arm, ready for evaluation on the jobs' device."""
    import transformers

    cfg, state = checkpoint.load(path)
    arm = cfg.pop("arm")
    config = transformers.AutoConfig.for_model(**cfg)
    model = swap_mlps(transformers.AutoModelForCausalLM.from_config(config, dtype=config.dtype), arm)
    model.load_state_dict(state)
    return model.to(device()).eval(), arm
