"""Think-as-You-See (TaYS): reasoning units written while the frames of a video stream in.

A row's sequence (TaYS): [prompt: system + question + options][V_0 .. V_{G-1}: the frame groups]
[preamble <think>][U_0 </think> U_1 </think> ... U_{G-1} <answer> x </answer> <eos>], one unit per
frame group (one second). Who sees what (`repro.streaming.masks.group_visibility_allowed`): prompt
and video rows are causal and never see reasoning; unit U_i sees the prompt, V_0..V_i, the preamble,
the earlier units and its own prefix; the preamble sees V_0 only; shift: the row that predicts
U_{i+1}'s first token (U_i's terminator) already sees V_{i+1}. Prompt and video keep their positions,
reasoning positions restart at 0 from the preamble. `<skip>` (nothing happened) has loss weight 0.5.

The other paradigms, same model and steps, are trained with the plain causal mask their KV-cache
decoding computes (`allowed`): `interleaved` (frames and units physically interleaved, continuous
positions, strictly serial; a frame sees the units before it), `batch_units` (the whole video, then
the same per-second units: the controlled comparison) and `batch_holistic` (the whole video, then
one evidence text `<think> ... </think> <answer> x`, plain CE: the public batch baseline). The
answer x is the right option's letter or its text (`Codec.answer`).

Evaluation decodes greedily, one video at a time. TaYS runs on the real dual KV cache
(`repro.streaming.cache.LayerDualCache`): frame groups go into the source cache as they arrive
(inputs_embeds), unit i reads the source through V_i merged with the reasoning cache; this equals
re-prefilling per frame group (the public evaluation) and one masked forward, because video rows
never see reasoning. A unit ends at a terminator (</think> or <answer>; the canonical one for its
place is fed) or after `max_unit` tokens; the answer is the best-scoring option letter after <answer>,
or the option whose text (with </answer>) is most likely there.
"""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from repro.data import scenes
from repro.data.events import LETTERS, SKIP, WORDS
from repro.models.mllm import TinyMLLM, build_mllm
from repro.streaming.cache import LayerDualCache
from repro.streaming.masks import additive, group_visibility_allowed

PARADIGMS = ("tays", "interleaved", "batch_units", "batch_holistic")
ANSWERS = ("letter", "text")
THINK, END_THINK, ANSWER, END_ANSWER = "<think>", "</think>", "<answer>", "</answer>"


# ---------------------------------------------------------------- text


class Codec:
    """Text <-> ids: the word-level scene vocabulary (fresh models) or a hub tokenizer (`tokenizer`:
    name or folder; the markers <think> </think> <answer> </answer> <skip> must be single tokens).
    `answer`: what follows <answer>, the right option's letter or its text (`answer_ids`)."""

    def __init__(self, tokenizer: str | None = None, answer: str = "letter"):
        if answer not in ANSWERS:
            raise ValueError(f"unknown answer format {answer!r} (expected one of {ANSWERS})")
        self.answer = answer
        if tokenizer:
            from transformers import AutoTokenizer

            tok = AutoTokenizer.from_pretrained(tokenizer)
            self.encode = lambda text: tok.encode(text, add_special_tokens=False)
            self.decode = lambda ids: tok.decode(list(ids))
            self.size, self.bos, self.eos = len(tok), tok.bos_token_id, tok.eos_token_id
        else:
            vocab = scenes.Vocab(extra=(*WORDS, THINK, END_THINK, ANSWER, END_ANSWER))
            self.encode, self.decode = vocab.encode, vocab.decode
            self.size, self.bos, self.eos = len(vocab), vocab.bos_id, vocab.eos_id
        self.marker = {}
        for word in (THINK, END_THINK, ANSWER, END_ANSWER, SKIP, *LETTERS):
            # a letter may be one token only after a space (byte-level BPE)
            ids = next((x for x in (self.encode(word), self.encode(" " + word)) if len(x) == 1), None)
            if ids is None:
                raise ValueError(f"{word!r} must be one token of the tokenizer, got {self.encode(word)}")
            self.marker[word] = ids[0]
        self.letters = [self.marker[x] for x in LETTERS]
        self.terminators = {self.marker[END_THINK], self.marker[ANSWER]}

    def prompt(self, item: dict) -> list[int]:
        options = " ".join(f"{x} {o}" for x, o in zip(LETTERS, item["options"]))
        text = f"system : describe each second then answer question : {item['question']} {options}"
        return ([self.bos] if self.bos is not None else []) + self.encode(text)

    def answer_ids(self, item: dict, option: int | None = None) -> list[int]:
        """What follows <answer> for `option` (default: the right one), up to </answer>."""
        option = LETTERS.index(item["answer"]) if option is None else option
        body = [self.letters[option]] if self.answer == "letter" else self.encode(item["options"][option])
        return body + [self.marker[END_ANSWER]]


# ---------------------------------------------------------------- training sequences


def layout(item: dict, paradigm: str, codec: Codec, tokens_per_group: int, skip_weight: float) -> dict:
    """One row's sequence as arrays of length L: ids (pad at video slots), slot (index into the
    row's visual tokens, -1 for text), pos, group (video), sees (reasoning), label and weight (the
    loss of predicting token t sits on row t - 1)."""
    if paradigm not in PARADIGMS:
        raise ValueError(f"unknown paradigm {paradigm!r} (expected one of {PARADIGMS})")
    g_count = len(item["units"])
    rows = {k: [] for k in ("ids", "slot", "pos", "group", "sees", "label", "weight")}
    clock = {"pos": 0}

    def put(ids, slot, group, sees, weights) -> None:
        for i, s, w in zip(ids, slot, weights):
            if w is not None:  # this token is a target: its loss sits on the previous row
                rows["label"][-1], rows["weight"][-1] = i, w
            rows["ids"].append(i)
            rows["slot"].append(s)
            rows["group"].append(group)
            rows["sees"].append(sees)
            rows["pos"].append(clock["pos"])
            rows["label"].append(-100)
            rows["weight"].append(0.0)
            clock["pos"] += 1

    def text(ids, sees=-1, weights=None) -> None:
        put(ids, [-1] * len(ids), -1, sees, weights or [None] * len(ids))

    def video(k: int) -> None:
        n = tokens_per_group
        put([0] * n, range(k * n, (k + 1) * n), k, -1, [None] * n)

    def unit(k: int, sees: int, end_sees: int) -> None:
        ids = codec.encode(item["units"][k])
        text(ids, sees, [skip_weight if i == codec.marker[SKIP] else 1.0 for i in ids])
        end = END_THINK if k < g_count - 1 else ANSWER
        text([codec.marker[end]], end_sees, [1.0])

    last = g_count - 1
    answer = codec.answer_ids(item) + ([codec.eos] if codec.eos is not None else [])
    text(codec.prompt(item))
    if paradigm == "interleaved":
        video(0)
        text([codec.marker[THINK]], last)
        for k in range(g_count):
            if k:
                video(k)
            unit(k, last, last)
    else:
        for k in range(g_count):
            video(k)
        if paradigm == "tays":
            clock["pos"] = 0  # reasoning positions restart at the preamble
            text([codec.marker[THINK]], 0)
            for k in range(g_count):
                unit(k, k, min(k + 1, last))  # the shift: the terminator row sees the next group
        elif paradigm == "batch_units":
            text([codec.marker[THINK]], last)
            for k in range(g_count):
                unit(k, last, last)
        else:
            text([codec.marker[THINK]], last)
            body = codec.encode(item["holistic"]) + [codec.marker[END_THINK], codec.marker[ANSWER]]
            text(body, last, [1.0] * len(body))
    text(answer, last, [1.0] * len(answer))
    return {k: np.asarray(v, np.float32 if k == "weight" else np.int64) for k, v in rows.items()}


def caption_layout(caption: str, codec: Codec, tokens_per_group: int) -> dict:
    """A perception pre-training row (LLaVA's alignment stage): [<bos>] [one frame group] [caption
    <eos>], the loss on the caption, as the arrays of `layout` (trained under the plain causal mask)."""
    head = [codec.bos] if codec.bos is not None else []
    text = codec.encode(caption) + ([codec.eos] if codec.eos is not None else [])
    n = len(head) + tokens_per_group + len(text)
    ids = np.asarray(head + [0] * tokens_per_group + text, np.int64)
    slot = np.full(n, -1, np.int64)
    slot[len(head): len(head) + tokens_per_group] = np.arange(tokens_per_group)
    group = np.where(slot >= 0, 0, -1).astype(np.int64)
    label = np.full(n, -100, np.int64)
    label[n - len(text) - 1: n - 1] = text  # the loss of predicting token t sits on row t - 1
    return {"ids": ids, "slot": slot, "pos": np.arange(n, dtype=np.int64), "group": group,
            "sees": np.full(n, -1, np.int64), "label": label, "weight": (label != -100).astype(np.float32)}


def collate(layouts: list[dict], frames: list[np.ndarray]) -> dict:
    """Pad a batch: the row arrays to the longest row, the frames to the most frames."""
    b, n = len(layouts), max(len(x["ids"]) for x in layouts)
    out = {k: np.full((b, n), -100 if k == "label" else (-1 if k in ("slot", "group", "sees") else 0),
                      np.float32 if k == "weight" else np.int64) for k in layouts[0]}
    valid = np.zeros((b, n), bool)
    for r, x in enumerate(layouts):
        for k, v in x.items():
            out[k][r, : len(v)] = v
        valid[r, : len(x["ids"])] = True
    f = max(len(x) for x in frames)
    video = np.zeros((b, f, *frames[0].shape[1:]), np.uint8)
    for r, x in enumerate(frames):
        video[r, : len(x)] = x
    batch = {k: torch.from_numpy(v) for k, v in out.items()}
    batch["valid"] = torch.from_numpy(valid)
    batch["frames"] = scenes.images_to_tensor(video.reshape(-1, *video.shape[2:])).view(b, f, 3, *video.shape[2:4])
    return batch


def embed_rows(model: TinyMLLM, ids: torch.Tensor, slot: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
    """Text embeddings with each video slot replaced by its visual token."""
    b, f = frames.shape[:2]
    vis = model.visual_tokens(frames.flatten(0, 1)).reshape(b, f * model.n_visual, -1)
    picked = vis.gather(1, slot.clamp(min=0)[..., None].expand(-1, -1, vis.shape[-1]))
    return torch.where((slot >= 0)[..., None], picked, model.embed(ids))


def allowed(paradigm: str, group: torch.Tensor, sees: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Who sees what in training, bool [B, L, L]: TaYS's visibility rule for TaYS; every other paradigm
    is trained with the plain causal mask over its physical order, which is what its KV-cache decoding
    computes (interleaved frames see the units written before them)."""
    if paradigm != "tays":  # no frame groups, no reasoning roles: causal order and padding only
        group, sees = torch.full_like(group, -1), torch.full_like(sees, -1)
    return group_visibility_allowed(group, sees, valid)


class Objective(nn.Module):
    """The weighted next-token loss of a padded batch (`collate`) of one paradigm, for the shared
    training loop: sum of weight x CE over the targets, divided by the number of targets."""

    def __init__(self, model: TinyMLLM, paradigm: str):
        super().__init__()
        self.model, self.paradigm = model, paradigm

    def forward(self, ids, slot, pos, group, sees, label, weight, valid, frames):
        h = embed_rows(self.model, ids, slot, frames)
        mask = additive(allowed(self.paradigm, group, sees, valid), h.dtype)
        logits, _ = self.model(inputs_embeds=h, positions=pos, mask=mask)
        ce = F.cross_entropy(logits.flatten(0, 1).float(), label.flatten(), ignore_index=-100, reduction="none")
        return SimpleNamespace(loss=(ce * weight.flatten()).sum() / (label != -100).sum())


def codec_for(params: dict) -> Codec:
    """The codec a profile section names: its model's tokenizer, its data's answer format."""
    return Codec(params["model"].get("tokenizer"), params["data"].get("answer", "letter"))


def build_model(spec: dict, codec: Codec) -> TinyMLLM:
    return build_mllm(spec, codec.size)


# ---------------------------------------------------------------- streaming evaluation


def _greedy_unit(logits: torch.Tensor, feed, stops: set[int], cap: int) -> list[int]:
    """Argmax tokens, each fed back (`feed(token) -> logits`) until a stop token (returned, not fed)
    or `cap` tokens."""
    out = []
    while True:
        tok = int(logits[0, -1].argmax())
        out.append(tok)
        if tok in stops or len(out) >= cap:
            return out
        logits = feed(tok)


@torch.no_grad()
def generate(model: TinyMLLM, codec: Codec, item: dict, paradigm: str, frames_per_group: int, max_unit: int,
             max_holistic: int) -> dict:
    """Decode one video: `units` (token ids per unit, the holistic text as one), `letter` (index)."""
    dev = next(model.parameters()).device
    video = scenes.images_to_tensor(np.asarray(item["frames"])).to(dev)
    g_count = len(item["units"])
    emb = lambda ids: model.embed(torch.tensor([ids], device=dev))  # noqa: E731
    at = lambda a, n: torch.arange(a, a + n, device=dev)[None]  # noqa: E731
    vis = lambda k: model.visual_tokens(video[k * frames_per_group:(k + 1) * frames_per_group]).reshape(1, -1, emb([0]).shape[-1])  # noqa: E731
    m = codec.marker
    units = []
    if paradigm == "tays":
        cache, seen, state = LayerDualCache(), [], {"src": 0, "r": 0}

        def source(e):
            cache.feed_source(model, e, at(state["src"], e.shape[1]))
            state["src"] += e.shape[1]

        def reason(tok, visible):
            state["r"] += 1
            return cache.feed_target(model, emb([tok]), at(state["r"] - 1, 1), visible)

        def peek(ids):  # logits of ids fed after the answer point, the cache left as it was
            saved = cache.target
            logits = cache.feed_target(model, emb(ids), at(state["r"], len(ids)), seen[-1])
            cache.target = saved
            return logits

        source(emb(codec.prompt(item)))
        source(vis(0))
        seen.append(state["src"])
        logits = reason(m[THINK], seen[0])
        for k in range(g_count):
            units.append(_greedy_unit(logits, lambda t, v=seen[k]: reason(t, v), codec.terminators, max_unit))
            if k < g_count - 1:
                source(vis(k + 1))  # group k + 1 has arrived: the terminator row already sees it
                seen.append(state["src"])
                logits = reason(m[END_THINK], seen[k + 1])
            else:
                logits = reason(m[ANSWER], seen[k])
    else:
        state = {"past": None, "pos": 0}

        def run(e):
            logits, state["past"] = model(inputs_embeds=e, positions=at(state["pos"], e.shape[1]), past=state["past"])
            state["pos"] += e.shape[1]
            return logits

        step = lambda t: run(emb([t]))  # noqa: E731
        peek = lambda ids: model(inputs_embeds=emb(ids), positions=at(state["pos"], len(ids)), past=state["past"])[0]  # noqa: E731
        head = [emb(codec.prompt(item)), *(vis(k) for k in range(1 if paradigm == "interleaved" else g_count))]
        logits = run(torch.cat([*head, emb([m[THINK]])], 1))
        if paradigm == "batch_holistic":
            units.append(_greedy_unit(logits, step, codec.terminators, max_holistic))
            logits = run(emb([m[END_THINK], m[ANSWER]]))
        else:
            for k in range(g_count):
                units.append(_greedy_unit(logits, step, codec.terminators, max_unit))
                end = emb([m[END_THINK] if k < g_count - 1 else m[ANSWER]])
                nxt = [vis(k + 1)] if paradigm == "interleaved" and k < g_count - 1 else []
                logits = run(torch.cat([end, *nxt], 1))
    return {"units": units, "letter": choose(logits, peek, codec, item)}


def choose(logits: torch.Tensor, peek, codec: Codec, item: dict) -> int:
    """The option (index) the model answers after <answer> (`logits` there): the best-scoring letter,
    or the option whose text, up to </answer>, has the highest log-probability (`peek(ids)`: the
    logits of ids fed from the answer point)."""
    if codec.answer == "letter":
        return int(logits[0, -1, codec.letters].argmax())
    scores = []
    for j in range(len(item["options"])):
        ids = codec.answer_ids(item, j)
        logp = torch.cat([logits[0, -1:], peek(ids[:-1])[0]]).log_softmax(-1)  # ids end with </answer>
        scores.append(float(logp[torch.arange(len(ids)), torch.tensor(ids)].sum()))
    return int(np.argmax(scores))


@torch.no_grad()
def caption(model: TinyMLLM, codec: Codec, frames: np.ndarray, max_tokens: int) -> str:
    """Greedy caption of a one-second clip after [<bos>] [its frame group] (the pre-training view)."""
    dev = next(model.parameters()).device
    vis = model.visual_tokens(scenes.images_to_tensor(np.asarray(frames)).to(dev)).reshape(1, -1, model.decoder.config["hidden_size"])
    head = [model.embed(torch.tensor([[codec.bos]], device=dev))] if codec.bos is not None else []
    e = torch.cat([*head, vis], 1)
    logits, past = model(inputs_embeds=e, positions=torch.arange(e.shape[1], device=dev)[None])
    pos, out = e.shape[1], []
    for _ in range(max_tokens):
        tok = int(logits[0, -1].argmax())
        if tok == codec.eos:
            break
        out.append(tok)
        logits, past = model(inputs_embeds=model.embed(torch.tensor([[tok]], device=dev)),
                             positions=torch.tensor([[pos]], device=dev), past=past)
        pos += 1
    return codec.decode(out)


def unit_texts(codec: Codec, units: list[list[int]]) -> list[str]:
    """The generated units as text, terminators dropped."""
    return [codec.decode([t for t in u if t not in codec.terminators]).strip() for u in units]


def deviation(texts: list[str], paradigm: str, truth: list[str]) -> tuple[float, float]:
    """(mean |group that describes a change - group it happened in|, share of changes described) over
    the changes of the ground-truth units after the first. The describing group is the first unit
    whose parts (split at ' , ') contain the change's phrase; for the holistic text, the second its
    part stamps ('at 3 red circle stops'). A change never described counts as G groups off."""
    g_count = len(truth)
    changes = [(g, p) for g, u in enumerate(truth) if g and u != SKIP for p in u.split(" , ")]
    if not changes:
        return 0.0, 1.0
    if paradigm == "batch_holistic":
        stamped = {}
        for part in (texts[0] if texts else "").split(" , "):
            words = part.split()
            if len(words) > 2 and words[0] == "at" and words[1].isdigit():
                stamped.setdefault(" ".join(words[2:]), int(words[1]))
        where = [stamped.get(p) for _, p in changes]
    else:
        where = [next((k for k, t in enumerate(texts) if p in t.split(" , ")), None) for _, p in changes]
    devs = [g_count if w is None else abs(w - g) for (g, _), w in zip(changes, where)]
    return float(np.mean(devs)), float(np.mean([w is not None for w in where]))


# ---------------------------------------------------------------- the public evaluation's emulation


@torch.no_grad()
def masked_logits(model: TinyMLLM, row: dict, frames: np.ndarray, paradigm: str = "tays") -> torch.Tensor:
    """Logits [L, V] of one row of `paradigm` in one forward under its training mask."""
    batch = collate([row], [frames])
    h = embed_rows(model, batch["ids"], batch["slot"], batch["frames"])
    mask = additive(allowed(paradigm, batch["group"], batch["sees"], batch["valid"]), h.dtype)
    return model(inputs_embeds=h, positions=batch["pos"], mask=mask)[0][0]


@torch.no_grad()
def reprefill_logits(model: TinyMLLM, row: dict, frames: np.ndarray) -> torch.Tensor:
    """Logits of a TaYS row, as the public evaluation computes them: once frame group v has arrived,
    a fresh masked forward of [prompt, V_0..V_v, the reasoning up to the rows that see V_v]; a
    reasoning row's logits come from the pass of its own visibility."""
    group, sees = row["group"], row["sees"]
    out = torch.zeros(len(group), model.decoder.config["vocab_size"])
    for v in sorted(set(sees[sees >= 0].tolist())):
        last = np.flatnonzero(sees == v).max()
        keep = np.flatnonzero((group <= v) & (np.arange(len(group)) <= last))
        logits = masked_logits(model, {k: x[keep] for k, x in row.items()}, frames)
        mine = np.flatnonzero(sees[keep] == v)
        out[keep[mine]] = logits[mine]
    return out
