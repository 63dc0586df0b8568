"""Stage 2: the shared starting point of every arm: the tiny MLLM trained with every visual token on
captions (LLaVA's alignment stage) and the scene questions. LLaVA-1.5 trains only the projector here,
on top of a language model pre-trained elsewhere; our language model starts from random weights,
so this stage trains every weight. One run, with the workflow seed."""
import torch
from torch import nn

from repro.core.io import atomic_write_json
from repro.core.stage import StageContext, main
from repro.models.mllm import build_mllm
from repro.models.training import tail_mean, train_causal_lm
from repro.papers.hidrop import _batches
from repro.papers.hidrop.method import Arm, Schedule, _Out, caption_loss


class Pretrainer(nn.Module):
    """Caption loss (every caption token) + answer loss (vanilla schedule), summed."""

    def __init__(self, model, bos_id: int):
        super().__init__()
        self.model, self.bos_id = model, bos_id
        self.vqa = Arm(model, Schedule(len(model.decoder.blocks)), bos_id)

    def forward(self, cap_images, cap_ids, cap_labels, images, text, last, answer):
        loss = caption_loss(self.model, cap_images, cap_ids, cap_labels, self.bos_id)
        return _Out(None, loss + self.vqa(images, text, last, answer).loss)


def run(ctx: StageContext) -> dict:
    p, t = ctx.params, ctx.params["pretrain"]
    words = _batches.words(p["model"])
    torch.manual_seed(ctx.seed)
    model = build_mllm(p["model"], len(words))
    split = _batches.load_split(ctx.inputs["data"], "train", words)
    half = t["batch_size"] // 2
    caps = _batches.sampler(split, half, (ctx.seed, 0), split.captions)
    vqa = _batches.sampler(split, half, (ctx.seed, 1), split.vqa)

    def next_batch(step: int) -> dict:
        return {**{f"cap_{k}": v for k, v in caps(step).items()}, **vqa(step)}

    model.to(_batches.device()).train()
    losses = train_causal_lm(Pretrainer(model, words.bos_id), next_batch, steps=t["steps"], lr=t["lr"],
                             warmup=t["warmup"], weight_decay=t["weight_decay"], grad_clip=t["grad_clip"],
                             desc="pretrain")
    model.save(ctx.out / "model")
    atomic_write_json(ctx.out / "history.json", {"train_loss": losses})
    return {"steps": t["steps"], "params": sum(q.numel() for q in model.parameters()),
            "visual_tokens": model.n_visual, "train_loss_first": tail_mean(losses[: max(1, len(losses) // 10)]),
            "train_loss_last": tail_mean(losses)}


if __name__ == "__main__":
    main(run)
