"""ProactiveLLM's mechanism: visibility schedules for training (V0 full, V1 wait-k, V2 MSM), the
SPSD objective (V3), the oracle-label decision head (V4 baseline), and the decision heads that turn
a model's own next-token state into READ/WRITE (negative entropy, max-probability, attention mass on
the newest source units, its sign chosen on validation), with wait-k, fixed-chunk, read-then-generate
and oracle policies for comparison.

Arms (params `arms.<name>.kind`):
  full        V0: every target token sees the whole source (read-then-generate)
  waitk       V1: target token t sees min(t + k - 1, S) units, k drawn per sample from the arm's
              [lo, hi] (lo = hi: one k; a range: multi-path wait-k, one model for every tested k)
  msm         V2: per sample a random monotone schedule 1 <= c_1 <= ... <= c_T <= S: the content rows
              are the sorted draws of T-1 uniform integers in [1, S]; the EOS row sees S when the
              task requires it (`eos_full_source`), else a uniform draw in [c_{T-1}, S];
              loss = NLL of y_t given x_<=c_t, y_<t
  msm_spsd    V3: MSM + lambda * NLL(full view) + beta * KL(teacher || student), the teacher being
              the same model's full view in the same batch under stop-gradient
  msm_oracle  V4: MSM + a linear head on the final hidden state trained (BCE) on oracle sufficiency
              labels 1[c_t >= oracle_t]: the external-signal baseline
Wait-k's EOS row, too, sees the whole source when the task requires it.
"""
from __future__ import annotations

import random
from pathlib import Path
from types import SimpleNamespace

import torch
import torch.nn.functional as F
from torch import nn

from repro.models import checkpoint
from repro.streaming.loop import Policy, StepState

# --- visibility schedules (in source units, one per target row) ---------------------------------

def schedule(kind: str, n_units: int, rows: int, rng: random.Random, k: int = 1,
             eos_full_source: bool = True) -> list[int]:
    if kind == "full":
        vis = [n_units] * rows
    elif kind == "waitk":
        vis = [min(k + t, n_units) for t in range(rows)]
        if eos_full_source:
            vis[-1] = n_units
    elif kind in ("msm", "msm_spsd", "msm_oracle"):
        # T-1 content rows, each view uniform over 1..S; drawing T and overwriting the last with S
        # (the first version) made the content rows order statistics of T draws, biased toward
        # insufficient views
        vis = sorted(rng.randint(1, n_units) for _ in range(rows - 1))
        vis.append(n_units if eos_full_source else rng.randint(vis[-1] if vis else 1, n_units))
    else:
        raise ValueError(f"unknown schedule {kind!r}")
    return vis


# --- training objective -------------------------------------------------------------------------

def token_nll(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(), ignore_index=-100)


def spsd_kl(student: torch.Tensor, teacher: torch.Tensor, labels: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(teacher || student) per target token (mean), the teacher under stop-gradient."""
    keep = labels != -100
    t = F.log_softmax(teacher[keep].detach().float() / temperature, -1)
    s = F.log_softmax(student[keep].float() / temperature, -1)
    return (t.exp() * (t - s)).sum(-1).mean() * temperature**2


def lm_forward(lm, input_ids, attention_mask, position_ids, **kw):
    """The model on one masked pass, inputs on its device; the additive mask in the model's dtype
    (SDPA wants them equal)."""
    dev = lm.device
    return lm(input_ids=input_ids.to(dev), attention_mask=attention_mask.to(dev, lm.dtype),
              position_ids=position_ids.to(dev), **kw)


class Objective(nn.Module):
    """The language model plus its arm's loss; `forward(**batch).loss` as train_causal_lm expects."""

    def __init__(self, lm, arm: dict):
        super().__init__()
        self.lm, self.arm = lm, arm
        self.head = nn.Linear(lm.config.hidden_size, 1) if arm["kind"] == "msm_oracle" else None

    def forward(self, input_ids, attention_mask, position_ids, labels, full_mask=None, sufficient=None):
        kind = self.arm["kind"]
        if kind == "msm_spsd":  # student (partial view) and teacher (full view) in one batch
            logits = lm_forward(self.lm, torch.cat([input_ids, input_ids]), torch.cat([attention_mask, full_mask]),
                                torch.cat([position_ids, position_ids])).logits
            student, teacher = logits.chunk(2)
            msm, full = token_nll(student, labels), token_nll(teacher, labels)
            kl = spsd_kl(student, teacher, labels, self.arm["temperature"])
            loss = msm + self.arm["lambda"] * full + self.arm["beta"] * kl
            return SimpleNamespace(loss=loss, parts={"msm": msm, "full": full, "kl": kl})
        store = {}
        hook = (self.lm.get_output_embeddings().register_forward_pre_hook(
            lambda mod, args: store.__setitem__("h", args[0])) if self.head is not None else None)
        try:
            logits = lm_forward(self.lm, input_ids, attention_mask, position_ids).logits
        finally:
            if hook:
                hook.remove()
        nll = token_nll(logits, labels)
        if self.head is None:
            return SimpleNamespace(loss=nll, parts={"nll": nll})
        keep = sufficient >= 0
        bce = F.binary_cross_entropy_with_logits(self.head(store["h"][keep].float()).squeeze(-1), sufficient[keep])
        return SimpleNamespace(loss=nll + self.arm["label_weight"] * bce, parts={"nll": nll, "bce": bce})


def training_batch(examples, arm: dict, tok, rng: random.Random, eos_full_source: bool,
                   target_offset: int = 0) -> dict:
    """Tensors of one training step for `arm` (visibility drawn per example)."""
    from repro.papers.proactivellm._task import batch

    ks = arm.get("k", [1, 1])
    vis = [schedule(arm["kind"], len(e.units), e.rows, rng, rng.randint(*ks), eos_full_source) for e in examples]
    b = batch(examples, vis, tok, target_offset)
    out = {k: b[k] for k in ("input_ids", "attention_mask", "position_ids", "labels")}
    if arm["kind"] == "msm_spsd":
        full = [schedule("full", len(e.units), e.rows, rng) for e in examples]
        out["full_mask"] = batch(examples, full, tok, target_offset)["attention_mask"]
    if arm["kind"] == "msm_oracle":  # sufficiency label per target row, -1 elsewhere
        rows = torch.where(b["oracle"] >= 0, (b["visibility"] >= b["oracle"]).float(), -1.0)
        out["sufficient"] = torch.cat([torch.full((len(examples), b["src_width"]), -1.0), rows], 1)
    return out


def save_head(objective: Objective, folder: Path) -> None:
    """The V4 head (a linear probe on the final hidden state), when the arm has one."""
    if objective.head is not None:
        checkpoint.save(folder, {"in_features": objective.head.in_features}, objective.head.state_dict())


def load_head(folder: Path) -> nn.Module | None:
    if not Path(folder).exists():
        return None
    cfg, state = checkpoint.load(folder)
    head = nn.Linear(cfg["in_features"], 1)
    head.load_state_dict(state)
    return head.eval()


# --- decision heads: WRITE when score >= tau ------------------------------------------------------

def entropy_score(logits: torch.Tensor) -> torch.Tensor:
    logp = F.log_softmax(logits.float(), -1)
    return (logp.exp() * logp).sum(-1)  # negative entropy: high = confident


def maxprob_score(logits: torch.Tensor) -> torch.Tensor:
    return F.softmax(logits.float(), -1).max(-1).values


def attention_score(attentions: list[torch.Tensor], newest: torch.Tensor, layers) -> torch.Tensor:
    """Minus the attention mass the query puts on the newest source units (mean over the chosen
    layers and all heads): a query still attending to the edge of what it has read wants more."""
    picked = attentions if layers == "all" else [attentions[i] for i in layers]
    newest = newest.to(picked[0].device).unsqueeze(1)
    mass = torch.stack([(a.float() * newest).sum(-1).mean(1) for a in picked]).mean(0)
    return -mass


def learned_score(head: nn.Module, hidden: torch.Tensor) -> torch.Tensor:
    return torch.sigmoid(head(hidden.float()).squeeze(-1))


def step_score(name: str, state: StepState, cfg: dict, head: nn.Module | None = None) -> torch.Tensor:
    if name == "entropy":
        return entropy_score(state.logits)
    if name == "maxprob":
        return maxprob_score(state.logits)
    if name == "attention":
        newest = (state.key_unit >= (state.units_read - cfg["newest_units"])[:, None]).float()
        return attention_score(state.attentions, newest, cfg["layers"])
    if name == "learned":
        return learned_score(head, state.hidden)
    raise ValueError(f"unknown decision head {name!r}")


# --- policies ----------------------------------------------------------------------------------

def threshold_policy(name: str, tau: float, cfg: dict, head: nn.Module | None = None, sign: float = 1.0) -> Policy:
    """WRITE when sign x score >= tau (sign -1: the score read the other way round, as validation
    AUROC chooses for the attention head)."""
    return lambda state: sign * step_score(name, state, cfg, head) >= tau


def waitk_policy(k: int) -> Policy:
    return lambda state: state.units_read >= torch.minimum(k + state.written, state.n_units)


def chunk_policy(size: int, rate: float) -> Policy:
    """Fixed chunks: READ `size` units at a time; after each chunk WRITE until the target written so
    far reaches the chunk's share, ceil(units read x rate) tokens (rounded up: every chunk is owed
    at least its share), `rate` being target tokens per source unit measured on validation (the
    target's length is unknown while streaming). The loop writes the rest once the source is read."""
    def policy(state: StepState) -> torch.Tensor:
        boundary = (state.units_read % size == 0) | state.exhausted
        return boundary & (state.written < torch.ceil(state.units_read * rate))
    return policy


def read_all_policy() -> Policy:
    """Read-then-generate: the loop writes only once the source is exhausted."""
    return lambda state: torch.zeros_like(state.units_read, dtype=torch.bool)


def oracle_policy(oracles: list[list[int]]) -> Policy:
    """WRITE exactly when the reference's next token is determined (the hypothesis may run longer
    than the reference: then the whole source)."""
    width = max(map(len, oracles))
    table = torch.tensor([o + [o[-1]] * (width - len(o)) for o in oracles])

    def policy(state: StepState) -> torch.Tensor:
        need = table.to(state.units_read.device).gather(1, state.written.clamp(max=width - 1)[:, None])[:, 0]
        return state.units_read >= need
    return policy
