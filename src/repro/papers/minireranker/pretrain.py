"""Stage 3: the reranker's image-first pre-training. The tiny MLLM (repro.models.mllm) starts, with
`model.init_vision: embedder`, from the first stage's contrastively trained image tower (as MLLMs
start from a CLIP-style ViT; `freeze_vision` keeps it fixed, as LLaVA keeps CLIP) and learns
single-word VQA answers on scenes laid out [bos][image][question], the order MLLMs are pre-trained
on, so that the vision-first format has a VQA-style alignment to build on. The questions: the scene
questions of `source` (repro.data.scenes) and, with `predicates`, "is there <query> ?" about fresh
scenes (`_queries.predicate_questions`; a validation or test query's text is never asked). One run,
with the workflow's seed; every format and seed fine-tunes from it. At `paper` (a pre-trained
backbone) it runs 0 steps and only stores the assembled model."""
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from types import SimpleNamespace

from repro.core.io import atomic_write_json
from repro.core.stage import StageContext, main
from repro.data.scenes import images_to_tensor, load_scene_set
from repro.models import checkpoint
from repro.models.mllm import build_mllm
from repro.models.training import tail_mean, train_causal_lm
from repro.papers.minireranker._queries import predicate_questions
from repro.papers.minireranker._rerank import device, freeze_vision, tokens, vocab
from repro.papers.minireranker.method import Arm, layout, visual_kept


class VQA(nn.Module):
    """Next-word loss on the answer after [bos][image][question]."""

    def __init__(self, model, tok):
        super().__init__()
        self.model, self.tok = model, tok

    def logits(self, images, query_ids, query_len):
        queries = [row[:n].tolist() for row, n in zip(query_ids, query_len)]
        visual, kept = visual_kept(self.model, images, None, 1.0)
        embeds, positions, _, read = layout(self.model, Arm(), self.tok, visual, kept, self.model.n_visual, queries)
        logits, _ = self.model(inputs_embeds=embeds, positions=positions)
        return logits[torch.arange(len(read)), read]

    def forward(self, images, query_ids, query_len, answers):
        return SimpleNamespace(loss=F.cross_entropy(self.logits(images, query_ids, query_len).float(), answers))


def vision_from_embedder(model, folder) -> None:
    """Copy the dual encoder's image tower (patch embedder, blocks, final norm, patch positions
    without the CLS slot) into the MLLM's vision tower; the sizes must agree."""
    _, state = checkpoint.load(folder)
    model.vision.load_state_dict({k[len("vit."):]: v for k, v in state.items() if k.startswith("vit.")})
    model.pos.data.copy_(state["pos"][0, 1:])


def with_predicates(rows, source: dict, data, seed: int):
    """The scene VQA splits with the predicate questions of `_queries.predicate_questions` added
    (`source.splits`: rows per split), never asking a validation or test query's text."""
    import datasets

    queries = datasets.load_from_disk(str(data / "queries"))
    held_out = {t for t, s in zip(queries["text"], queries["split"]) if s != "train"}
    return {name: datasets.concatenate_datasets([rows[name], predicate_questions((seed, 5, code), n, source, held_out)])
            for code, (name, n) in enumerate(source["splits"].items())}


def run(ctx: StageContext) -> dict:
    p, t = ctx.params, ctx.params["pretrain"]
    v = vocab()
    tok = tokens(v, {**p["formats"], "prompt": ""})  # VQA: the question's last word reads the answer
    torch.manual_seed(ctx.seed)
    model = build_mllm(p["model"], len(v))
    if p["model"].get("init_vision") == "embedder":
        vision_from_embedder(model, ctx.inputs["embed"] / "embedder")
    freeze_vision(model, t)
    model.to(device())
    vqa = VQA(model, tok)
    out = {"steps": t["steps"], "params": sum(x.numel() for x in model.parameters())}
    if t["steps"]:
        rows = load_scene_set(t["source"], ctx.seed)
        if t.get("predicates"):
            rows = with_predicates(rows, t["predicates"], ctx.inputs["data"], ctx.seed)
        train, held = (rows[s].with_format("numpy")[:] for s in ("train", "val"))
        enc = lambda split: [v.encode(q) for q in split["question"]]  # noqa: E731
        train_ids, held_ids = enc(train), enc(held)

        def batch(images, ids, answers):
            width = max(map(len, ids))
            return {"images": images_to_tensor(images), "query_ids": torch.tensor([x + [0] * (width - len(x)) for x in ids]),
                    "query_len": torch.tensor([len(x) for x in ids]),
                    "answers": torch.tensor([v.index.get(a, v.unk_id) for a in answers])}

        def next_batch(step: int) -> dict:
            idx = np.random.default_rng([ctx.seed, 3, step]).integers(len(train_ids), size=t["batch_size"])
            return batch(train["image"][idx], [train_ids[i] for i in idx], train["answer"][idx])

        losses = train_causal_lm(vqa, next_batch, steps=t["steps"], lr=t["lr"], warmup=t["warmup"],
                                 weight_decay=t["weight_decay"], grad_clip=1.0, desc="VQA pre-training")
        with torch.no_grad():
            b = batch(held["image"], held_ids, held["answer"])
            pred = vqa.logits(*(b[k].to(device()) for k in ("images", "query_ids", "query_len"))).argmax(-1).cpu()
        correct = (pred == b["answers"]).numpy()
        kinds = held["kind"]
        out.update(train_loss_last=tail_mean(losses), heldout_accuracy=float(correct.mean()),
                   heldout_accuracy_by_kind={k: float(correct[kinds == k].mean()) for k in sorted(set(kinds))})
        atomic_write_json(ctx.out / "history.json", {"train_loss": losses})
    model.save(ctx.out / "model")
    return out


if __name__ == "__main__":
    main(run)
