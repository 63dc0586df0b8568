"""A batched dual KV cache: a source cache (appended on READ) and a target cache (appended on WRITE),
merged per layer for each forward.

It is the one place that touches transformers' cache protocol: an attention layer calls
`update(key, value, layer_idx)` with the keys/values of the tokens of the current forward and
attends over what it returns. We return [source buffer | target buffer | new tokens] and keep the
new keys/values pending; `commit_source` / `commit_target` then copy the rows that READ / WRITE
into their buffer. Buffers are preallocated per layer ([B, kv_heads, capacity, head_dim]); which
slots are real is given by `src_len` / `tgt_len` and enforced by the explicit 4D mask of each
forward (`round_mask`), so rows of a batch can read and write independently.

`DualKVCache` is tested against `transformers.Cache` (tests/test_streaming_cache.py: the signature of
`update`, the arguments a Llama forward passes it, and that a forward reads nothing else of the Cache
API) rather than subclassing it: a subclass would inherit answers that are wrong for a dual cache
(`get_seq_length` 0, `len` 0) and stay silent where a transformers bump starts calling them, and
`LayerDualCache`'s users (tays) would import transformers for nothing.
"""
from __future__ import annotations

import torch

from repro.streaming.masks import additive


class DualKVCache:
    def __init__(self, batch: int, src_capacity: int, tgt_capacity: int, device: str | torch.device = "cpu"):
        self.batch, self.src_capacity, self.tgt_capacity = batch, src_capacity, tgt_capacity
        self.device = torch.device(device)
        self.src_len = torch.zeros(batch, dtype=torch.long, device=self.device)
        self.tgt_len = torch.zeros(batch, dtype=torch.long, device=self.device)
        self._layers: dict[int, list[torch.Tensor]] = {}  # layer -> [src_k, src_v, tgt_k, tgt_v]
        self._pending: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, layer_idx: int, *args, **kwargs):
        if layer_idx not in self._layers:
            b, h, _, dk = key_states.shape
            dv = value_states.shape[-1]
            self._layers[layer_idx] = [key_states.new_zeros(b, h, self.src_capacity, dk),
                                       value_states.new_zeros(b, h, self.src_capacity, dv),
                                       key_states.new_zeros(b, h, self.tgt_capacity, dk),
                                       value_states.new_zeros(b, h, self.tgt_capacity, dv)]
        self._pending[layer_idx] = (key_states, value_states)
        sk, sv, tk, tv = self._layers[layer_idx]
        return torch.cat([sk, tk, key_states], 2), torch.cat([sv, tv, value_states], 2)

    @property
    def key_width(self) -> int:
        """Keys of a forward with no new tokens: the merged buffers."""
        return self.src_capacity + self.tgt_capacity

    def commit_source(self, rows: torch.Tensor, n_new: torch.Tensor) -> None:
        """The first `n_new[b]` new tokens of the last forward join row b's source cache (READ)."""
        width = next(iter(self._pending.values()))[0].shape[2]
        sel = rows[:, None] & (torch.arange(width, device=self.device)[None] < n_new[:, None])
        bi, ji = sel.nonzero(as_tuple=True)
        dest = self.src_len[bi] + ji
        if dest.numel() and int(dest.max()) >= self.src_capacity:
            raise ValueError("source cache overflow: a row read past its capacity")
        for layer, (k, v) in self._pending.items():
            sk, sv, _, _ = self._layers[layer]
            sk[bi, :, dest] = k[bi, :, ji]
            sv[bi, :, dest] = v[bi, :, ji]
        self.src_len += torch.where(rows, n_new, 0)

    def commit_target(self, rows: torch.Tensor, slot: int) -> None:
        """New token `slot` of the last forward joins row b's target cache (WRITE)."""
        bi = rows.nonzero(as_tuple=True)[0]
        dest = self.tgt_len[bi]
        if dest.numel() and int(dest.max()) >= self.tgt_capacity:
            raise ValueError("target cache overflow: a row wrote past its capacity")
        for layer, (k, v) in self._pending.items():
            _, _, tk, tv = self._layers[layer]
            tk[bi, :, dest] = k[bi, :, slot]
            tv[bi, :, dest] = v[bi, :, slot]
        self.tgt_len += rows.long()

    def round_allowed(self, n_new: torch.Tensor, width: int) -> torch.Tensor:
        """bool [B, width + 1, key_width + width + 1] for a forward of `width` source slots (the
        first n_new[b] real, read by row b) and one target query.

        A source slot sees the cached source and the real new slots up to itself; the query sees the
        cached source, the real new slots, the cached target and itself. Unused slots see only
        themselves and nobody sees them.
        """
        dev = self.device
        b = self.batch
        old_src = torch.arange(self.src_capacity, device=dev)[None] < self.src_len[:, None]
        old_tgt = torch.arange(self.tgt_capacity, device=dev)[None] < self.tgt_len[:, None]
        j = torch.arange(width, device=dev)
        new = j[None] < n_new[:, None]                                        # [B, U]
        causal = (j[:, None] >= j[None, :])[None] & new[:, None, :] & new[:, :, None]
        causal |= torch.eye(width, dtype=torch.bool, device=dev)[None] & ~new[:, :, None]
        slot_rows = torch.cat([old_src[:, None, :] & new[:, :, None],
                               torch.zeros(b, width, self.tgt_capacity, dtype=torch.bool, device=dev),
                               causal, torch.zeros(b, width, 1, dtype=torch.bool, device=dev)], 2)
        query_row = torch.cat([old_src, old_tgt, new, torch.ones(b, 1, dtype=torch.bool, device=dev)], 1)
        return torch.cat([slot_rows, query_row[:, None]], 1)

    def round_mask(self, n_new: torch.Tensor, width: int, dtype: torch.dtype) -> torch.Tensor:
        return additive(self.round_allowed(n_new, width), dtype)

    def round_positions(self, width: int, target_offset: int = 0) -> torch.Tensor:
        """Group position ids: source slots continue the row's source, the query its target."""
        src = self.src_len[:, None] + torch.arange(width, device=self.device)[None]
        return torch.cat([src, (self.tgt_len + target_offset)[:, None]], 1)


class LayerDualCache:
    """A dual KV cache for `repro.models.decoder.Decoder` (a list of per-layer (k, v), batch 1 or
    rows of equal lengths): a source cache of prompt and frame tokens, fed as `inputs_embeds` (video
    rows never see the target, so their keys/values are final when written), and a target
    (reasoning) cache. A target forward attends over the first `visible` source keys merged with
    the whole target cache (merged per write), which is what one masked forward gives a row that
    sees that much of the source; the new keys/values join the target cache.
    """

    def __init__(self):
        self.source: list | None = None
        self.target: list | None = None

    @property
    def source_len(self) -> int:
        return 0 if self.source is None else self.source[0][0].shape[2]

    def feed_source(self, model, embeds: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Prompt or frame tokens [B, T, D] at `positions` [B, T]; their logits."""
        logits, self.source = model(inputs_embeds=embeds, positions=positions, past=self.source)
        return logits

    def feed_target(self, model, embeds: torch.Tensor, positions: torch.Tensor, visible: int) -> torch.Tensor:
        """Reasoning tokens [B, T, D] that see the first `visible` source tokens; their logits."""
        t = embeds.shape[1]
        past = [(k[:, :, :visible], v[:, :, :visible]) for k, v in self.source]
        if self.target is not None:
            past = [(torch.cat([sk, tk], 2), torch.cat([sv, tv], 2)) for (sk, sv), (tk, tv) in zip(past, self.target)]
        logits, merged = model(inputs_embeds=embeds, positions=positions, past=past)
        new = [(k[:, :, -t:], v[:, :, -t:]) for k, v in merged]
        self.target = new if self.target is None else [(torch.cat([tk, k], 2), torch.cat([tv, v], 2))
                                                       for (tk, tv), (k, v) in zip(self.target, new)]
        return logits
