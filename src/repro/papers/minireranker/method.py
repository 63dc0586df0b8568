"""miniReranker: point-wise MLLM reranking whose document KV cache is computed once and reused.

Read top to bottom:
1. Input formats: a (query, document) pair laid out as query-first, document-first or vision-first
   (`layout`); relevance = P("yes") of the softmax over the yes/no logits at the last position.
2. The arm of the ablation ladder (`Arm`): early exit after L_e layers, an interaction band
   [b, b + w) outside which query tokens see only the query and the sink (bos), embedder-guided
   pruning of the visual tokens to a share r (query-agnostic, so before caching), and where the
   query's positions start (persistent: after the full document length, pruned or not).
3. Two paths that compute the same function: `score_pairs` (one forward over the whole sequence
   with per-layer masks; training and the dense baseline) and `document_cache` + `score_cached`
   (each document's KV computed once, the query's tokens run against it; inference).
4. The embedder: a dual encoder (ViT with a CLS token + a text transformer) trained with InfoNCE
   for first-stage retrieval; its last block's CLS->patch attention scores the visual tokens.
5. Analytic FLOPs of a (query, document) pair under an arm, with the document part amortised over
   `reuse` queries (high reuse: amortised away; low reuse: paid by every pair).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from types import SimpleNamespace

import torch
import torch.nn.functional as F
from torch import nn

from repro.models.decoder import additive, apply_rope
from repro.models.vit import Block as VitBlock
from repro.models.vit import ViT

FORMATS = ("query_first", "document_first", "vision_first")
SINK, DOC, QUERY, PAD = 0, 1, 2, 3  # token segments


@dataclass(frozen=True)
class Tokens:
    """The ids a layout needs: bos, the document caption (document-first), the prompt, yes / no."""
    bos: int
    caption: tuple[int, ...]
    prompt: tuple[int, ...]
    yes: int
    no: int


@dataclass(frozen=True)
class Arm:
    """A rung of the ladder. exit: layers run (None: all); band: (b, w), query tokens see document
    tokens only in layers b..b+w-1; keep: share r of visual tokens kept; positions: `persistent`
    (kept tokens keep their positions, the query starts after the full document) or `compact`."""
    fmt: str = "vision_first"
    exit: int | None = None
    band: tuple[int, int] | None = None
    keep: float = 1.0
    positions: str = "persistent"

    def __post_init__(self):
        if self.fmt not in FORMATS:
            raise ValueError(f"unknown input format {self.fmt!r} (expected one of {FORMATS})")
        if (self.band or self.keep < 1 or self.exit) and self.fmt != "vision_first":
            raise ValueError("early exit, band and pruning are rungs on the vision-first format")
        if self.band and self.exit and self.band[0] + self.band[1] > self.exit:
            raise ValueError(f"band {self.band} ends after the exit layer {self.exit}")

    @classmethod
    def rung(cls, rung: dict, selection: dict, positions: str = "persistent") -> Arm:
        """A ladder rung of params ({exit: bool (default true), band: bool, keep: r}) at the selected
        exit layer and band; `exit: false` runs every layer (the dense control)."""
        band = tuple(selection["band"]) if rung.get("band") else None
        exit_ = selection["exit"] if rung.get("exit", True) else None
        return cls(exit=exit_, band=band, keep=rung.get("keep", 1.0), positions=positions)

    def scaled(self, n_layers: int, to_layers: int) -> Arm:
        """The same rung in a deeper model: exit and band start at the same share of the depth, the
        band as wide."""
        scale = lambda x: max(1, round(x * to_layers / n_layers))  # noqa: E731
        exit_ = scale(self.exit) if self.exit else None
        band = None
        if self.band:
            w = self.band[1]
            band = (min(round(self.band[0] * to_layers / n_layers), (exit_ or to_layers) - w), w)
        return Arm(self.fmt, exit_, band, self.keep, self.positions)

    def in_band(self, layer: int) -> bool:
        return self.band is None or self.band[0] <= layer < self.band[0] + self.band[1]

    def doc_layers(self, n_layers: int) -> int:
        """Layers whose document KV a query can read: the document is run only this deep."""
        depth = self.exit or n_layers
        return depth if self.band is None else min(depth, self.band[0] + self.band[1])


# ---------------------------------------------------------------- 1. formats and relevance


def n_keep(n: int, keep: float) -> int:
    return max(1, math.ceil(keep * n - 1e-9))


def keep_index(saliency: torch.Tensor, keep: float) -> torch.Tensor:
    """[D, N] query-agnostic token scores -> indices [D, ceil(r N)] of the kept tokens, ascending."""
    k = n_keep(saliency.shape[1], keep)
    return saliency.topk(k, dim=1).indices.sort(dim=1).values


def layout(model, arm: Arm, tok: Tokens, visual: torch.Tensor, kept: torch.Tensor, n_visual: int,
           queries: list[list[int]]):
    """Embeddings [B, T, D], positions [B, T], segments [B, T] and the read index [B] of a batch of
    pairs laid out in `arm.fmt`; `visual` [B, k, D] are the kept visual tokens at grid indices
    `kept` [B, k]. Rows are right-padded, so causal attention never reaches a pad."""
    dev = visual.device
    emb = lambda ids: model.embed(torch.tensor(ids, dtype=torch.long, device=dev)[None])[0]  # noqa: E731
    rows, pos, seg, read = [], [], [], []
    for b, q in enumerate(queries):
        parts = {"query_first": [(SINK, [tok.bos]), (QUERY, q), (DOC, None), (QUERY, list(tok.prompt))],
                 "document_first": [(SINK, [tok.bos]), (DOC, list(tok.caption)), (DOC, None),
                                    (QUERY, q + list(tok.prompt))],
                 "vision_first": [(SINK, [tok.bos]), (DOC, None), (QUERY, q + list(tok.prompt))]}[arm.fmt]
        e, p, s, at = [], [], [], 0
        for segment, ids in parts:
            if ids is None:  # the image: kept tokens at their grid positions (persistent) or packed
                e.append(visual[b])
                offs = kept[b] if arm.positions == "persistent" else torch.arange(kept.shape[1], device=dev)
                p.append(at + offs)
                s += [DOC] * kept.shape[1]
                at += n_visual if arm.positions == "persistent" else kept.shape[1]
            else:
                e.append(emb(ids))
                p.append(torch.arange(at, at + len(ids), device=dev))
                s += [segment] * len(ids)
                at += len(ids)
        rows.append(torch.cat(e))
        pos.append(torch.cat(p))
        seg.append(torch.tensor(s, device=dev))
        read.append(len(s) - 1)
    t = max(len(s) for s in seg)
    pad = lambda xs, v: torch.stack([F.pad(x, (0, 0, 0, t - len(x)) if x.dim() == 2 else (0, t - len(x)),  # noqa: E731
                                           value=v) for x in xs])
    positions = pad(pos, 0)
    positions = torch.where(pad(seg, PAD) == PAD, positions.max() + 1, positions)
    return pad(rows, 0.0), positions, pad(seg, PAD), torch.tensor(read, device=dev)


def band_mask(segments: torch.Tensor) -> torch.Tensor:
    """Additive [B, 1, T, T] of the layers outside the band: causal, and query rows see no document
    column (the sink and the query stay visible)."""
    t = segments.shape[1]
    causal = torch.ones(t, t, dtype=torch.bool, device=segments.device).tril()
    qrow, dcol = segments[:, :, None] == QUERY, segments[:, None, :] == DOC
    return additive(causal & ~(qrow & dcol))[:, None]


def relevance(yes_no: torch.Tensor) -> torch.Tensor:
    """[B, 2] (yes, no) logits -> P("yes") of their softmax."""
    return yes_no.float().softmax(-1)[:, 0]


def yes_no(logits: torch.Tensor, tok: Tokens) -> torch.Tensor:
    return torch.stack([logits[..., tok.yes], logits[..., tok.no]], dim=-1)


def pair_loss(yn: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the yes/no softmax against the relevance label (1: yes)."""
    return F.cross_entropy(yn.float(), (1 - labels).long())


def listwise_loss(yn: torch.Tensor, labels: torch.Tensor, group: torch.Tensor) -> torch.Tensor:
    """Mean over groups of -log softmax_i(yes_i - no_i) at the group's one relevant member: the
    documents of a group compete, so a near miss must score below the document that satisfies the
    query (`group` [B]: group ids 0..G-1; exactly one label 1 per group)."""
    margin = (yn[:, 0] - yn[:, 1]).float()
    n = int(group.max()) + 1
    if not torch.equal(group[labels.bool()], torch.arange(n, device=group.device)):
        raise ValueError("every group needs exactly one relevant member, and groups are numbered 0..G-1")
    lse = torch.stack([margin[group == g].logsumexp(0) for g in range(n)])
    return (lse - margin[labels.bool()]).mean()


def rank_loss(yn: torch.Tensor, labels: torch.Tensor, group: torch.Tensor, pointwise: float) -> torch.Tensor:
    """Listwise loss plus `pointwise` x the yes/no cross-entropy, which keeps P(yes) a relevance score."""
    return listwise_loss(yn, labels, group) + pointwise * pair_loss(yn, labels)


# ---------------------------------------------------------------- 3. the two paths


def visual_kept(model, images: torch.Tensor, saliency: torch.Tensor | None, keep: float):
    """Projected visual tokens of the kept grid cells [B, k, D] and their indices [B, k]; pruning
    uses the embedder's query-agnostic scores only, so a document's kept set is fixed before caching."""
    visual = model.visual_tokens(images)
    n = visual.shape[1]
    if keep >= 1 or saliency is None:
        kept = torch.arange(n, device=visual.device).expand(visual.shape[0], n)
    else:
        kept = keep_index(saliency.to(visual.device), keep)
    return visual.gather(1, kept[..., None].expand(-1, -1, visual.shape[-1])), kept


def score_pairs(model, arm: Arm, tok: Tokens, images, queries, saliency=None):
    """Yes/no logits [B, 2] of whole sequences (the training path; the dense baseline when the arm
    has no rung): the band's masks go in through the decoder's before_layer hook."""
    visual, kept = visual_kept(model, images, saliency, arm.keep)
    embeds, positions, segments, read = layout(model, arm, tok, visual, kept, model.n_visual, queries)
    outside = band_mask(segments) if arm.band else None

    def before_layer(i, h, pos, mask):
        return None if outside is None else (h, pos, None if arm.in_band(i) else outside)

    logits, _ = model(inputs_embeds=embeds, positions=positions, before_layer=before_layer, exit_after=arm.exit)
    return yes_no(logits[torch.arange(len(read)), read], tok)


@torch.no_grad()
def document_cache(model, arm: Arm, tok: Tokens, images, saliency=None):
    """Per layer (k, v) of [bos][kept visual tokens] for a batch of documents, only as deep as a
    query reads them (`Arm.doc_layers`). A document token never attends to a query: the cache is
    computed without one."""
    visual, kept = visual_kept(model, images, saliency, arm.keep)
    bos = model.embed(torch.full((visual.shape[0], 1), tok.bos, device=visual.device))
    packed = torch.arange(kept.shape[1], device=kept.device).expand_as(kept)
    positions = torch.cat([torch.zeros_like(kept[:, :1]), 1 + (kept if arm.positions == "persistent" else packed)], 1)
    _, cache = model(inputs_embeds=torch.cat([bos, visual], 1), positions=positions,
                     exit_after=arm.doc_layers(len(model.decoder.blocks)))
    return cache


@torch.no_grad()
def sink_cache(model, tok: Tokens):
    """Per layer (k, v) of the bos token alone: it sees only itself, so it is the same for every
    document, and it is all a query reads outside the band."""
    _, cache = model(ids=torch.tensor([[tok.bos]], device=model.pos.device))
    return cache


@torch.no_grad()
def score_cached(model, arm: Arm, tok: Tokens, doc_cache: list, sink: list, query: list[int], n_visual: int,
                 n_kept: int):
    """Yes/no logits [K, 2] of one query against K cached documents (doc_cache from
    `document_cache` over those K): layers in the band read the document's KV, the others the sink's."""
    k = doc_cache[0][0].shape[0]
    depth = arm.exit or len(model.decoder.blocks)
    past = []
    for i in range(depth):
        if arm.in_band(i):
            past.append(doc_cache[i])
        else:
            past.append(tuple(x.expand(k, -1, -1, -1) for x in sink[i]))
    ids = torch.tensor([query + list(tok.prompt)], device=doc_cache[0][0].device).expand(k, -1)
    start = 1 + (n_visual if arm.positions == "persistent" else n_kept)
    positions = torch.arange(start, start + ids.shape[1], device=ids.device).expand(k, -1)
    logits, _ = model(inputs_embeds=model.embed(ids), past=past, positions=positions, exit_after=depth)
    return yes_no(logits[:, -1], tok)


@torch.no_grad()
def query_to_document_mass(model, tok: Tokens, images, queries) -> torch.Tensor:
    """Per layer, the mean attention mass query rows put on document columns in the dense
    vision-first model ([n_layers]); the band is the window of width w where it is largest."""
    arm = Arm()
    visual, kept = visual_kept(model, images, None, 1.0)
    embeds, positions, segments, _ = layout(model, arm, tok, visual, kept, model.n_visual, queries)
    qrow, dcol = segments == QUERY, (segments == DOC).float()
    masses = []

    def before_layer(i, h, pos, mask):
        block = model.decoder.blocks[i]
        a = block.attn
        x = block.attn_norm(h)
        rope = model.decoder.rotary(pos, h.dtype)
        k, _ = a.keys_values(x, rope, None)
        q = apply_rope(a.heads_of(a["q"](x), a.heads), *rope)
        k = k.repeat_interleave(a.heads // a.kv_heads, dim=1)
        t = h.shape[1]
        scores = q @ k.transpose(-1, -2) / math.sqrt(a.head_dim)
        scores = scores + additive(torch.ones(t, t, dtype=torch.bool, device=h.device).tril())
        probs = scores.softmax(-1).mean(1)  # [B, T, T] over heads
        mass = (probs * dcol[:, None, :]).sum(-1)  # [B, T]
        masses.append(float(mass[qrow].mean()))
        return None

    model(inputs_embeds=embeds, positions=positions, before_layer=before_layer)
    return torch.tensor(masses)


def choose_band(mass: torch.Tensor, width: int, exit_layer: int) -> int:
    """b of the width-w window inside [0, exit_layer) with the largest summed query->document mass."""
    if width > exit_layer:
        raise ValueError(f"a band of width {width} does not fit before the exit layer {exit_layer}")
    sums = [float(mass[b:b + width].sum()) for b in range(exit_layer - width + 1)]
    return max(range(len(sums)), key=sums.__getitem__)


class Scorer(nn.Module):
    """The reranker under an arm, as the shared training loop wants it: forward(**batch).loss, the
    rank loss over groups of (query, document) pairs."""

    def __init__(self, model, arm: Arm, tok: Tokens, pointwise: float):
        super().__init__()
        self.model, self.arm, self.tok, self.pointwise = model, arm, tok, pointwise

    def forward(self, images, query_ids, query_len, labels, group, saliency=None):
        queries = [row[:n].tolist() for row, n in zip(query_ids, query_len)]
        yn = score_pairs(self.model, self.arm, self.tok, images, queries, saliency)
        return SimpleNamespace(loss=rank_loss(yn, labels, group, self.pointwise))


# ---------------------------------------------------------------- 4. the embedder


class DualEncoder(nn.Module):
    """Image tower: ViT blocks over patches with a CLS token; text tower: transformer blocks over
    words (padded to a fixed length, so an embedding never depends on its batch) with a CLS token.
    Both CLS outputs are projected and L2-normalised."""

    def __init__(self, config: dict):
        super().__init__()
        self.config = c = dict(config)
        d, heads, inter = c["hidden_size"], c["num_attention_heads"], c["intermediate_size"]
        self.vit = ViT(d, c["num_hidden_layers"], heads, inter, c["patch_size"])
        n = (c["image_size"] // c["patch_size"]) ** 2
        self.cls = nn.Parameter(torch.zeros(1, 1, d))
        self.pos = nn.Parameter(torch.randn(1, 1 + n, d) * 0.02)
        self.words = nn.Embedding(c["vocab_size"], d)
        self.text_pos = nn.Parameter(torch.randn(1, 1 + c["max_words"], d) * 0.02)
        self.text_blocks = nn.ModuleList(VitBlock(d, heads, inter) for _ in range(c["num_hidden_layers"]))
        self.text_norm = nn.LayerNorm(d)
        self.image_proj, self.text_proj = nn.Linear(d, c["embed_dim"]), nn.Linear(d, c["embed_dim"])

    def encode_images(self, images: torch.Tensor, saliency: bool = False):
        """(embeddings [B, E], and with `saliency` the last block's CLS->patch attention [B, N],
        averaged over heads: the query-agnostic token scores pruning reads)."""
        x = self.vit.patch_embed(images)
        x = torch.cat([self.cls.expand(len(x), -1, -1), x], 1) + self.pos
        probs = None
        for i, block in enumerate(self.vit.blocks):
            last = i == len(self.vit.blocks) - 1
            x, probs = block.attend(x, need_probs=saliency and last)
            x = block.feed_forward(x)
        emb = F.normalize(self.image_proj(self.vit.norm(x)[:, 0]), dim=-1)
        return (emb, probs.mean(1)[:, 0, 1:]) if saliency else emb

    def encode_queries(self, ids: torch.Tensor) -> torch.Tensor:
        x = torch.cat([self.cls.expand(len(ids), -1, -1), self.words(ids)], 1) + self.text_pos[:, :1 + ids.shape[1]]
        for block in self.text_blocks:
            x = block(x)
        return F.normalize(self.text_proj(self.text_norm(x)[:, 0]), dim=-1)

    def forward(self, images, query_ids, negatives=None):
        """InfoNCE of each query against its positive, the batch's other positives and (optional)
        hard negatives."""
        q, d = self.encode_queries(query_ids), self.encode_images(images)
        if negatives is not None:
            d = torch.cat([d, self.encode_images(negatives)])
        logits = q @ d.T / self.config["temperature"]
        return SimpleNamespace(loss=F.cross_entropy(logits, torch.arange(len(q), device=q.device)))


# ---------------------------------------------------------------- 5. analytic cost


def pair_flops(dims: dict, arm: Arm, n_visual: int, n_query: int, n_caption: int = 0,
               reuse: float | None = math.inf) -> dict:
    """FLOPs of scoring one (query, document) pair: 2 M N K per matrix product (projections, MLP,
    attention scores and values over the visible keys) and the yes/no rows of the head at the read
    position. reuse None: one full forward per pair, no cache (the dense baseline, and the only way
    to run query-first). Otherwise the cached path: the document's tokens through the layers a query
    reads (`Arm.doc_layers`), divided by `reuse` (inf: amortised away, high reuse; 1: low reuse),
    plus the query's tokens through `exit` layers. dims: hidden_size, intermediate_size,
    num_attention_heads, num_key_value_heads, head_dim, num_hidden_layers; n_query counts the query
    and the prompt."""
    d, inter, h, kvh, hd, n_layers = (dims[k] for k in ("hidden_size", "intermediate_size", "num_attention_heads",
                                                        "num_key_value_heads", "head_dim", "num_hidden_layers"))
    per_token = 2 * d * (2 * h * hd + 2 * kvh * hd) + 2 * 3 * d * inter  # q, o, k, v + SwiGLU
    head = 2 * d * 2

    def attn(tq: int, keys_before: int) -> float:  # tq causal rows after `keys_before` visible keys
        return 2 * 2 * h * hd * (tq * keys_before + tq * (tq + 1) / 2)

    n_doc = 1 + (n_caption if arm.fmt == "document_first" else 0) + n_keep(n_visual, arm.keep)
    depth = arm.exit or n_layers
    if reuse is None:
        t = n_doc + n_query
        total = depth * (t * per_token + attn(t, 0)) + head
        return {"document": 0.0, "query": total, "total": total}
    if arm.fmt == "query_first":
        raise ValueError("query-first has nothing to cache: its document tokens see the query")
    doc = arm.doc_layers(n_layers) * (n_doc * per_token + attn(n_doc, 0))
    query = sum(n_query * per_token + attn(n_query, n_doc if arm.in_band(i) else 1) for i in range(depth)) + head
    return {"document": doc, "query": query, "total": query + (0.0 if math.isinf(reuse) else doc / reuse)}
