"""The READ/WRITE loop over a dual KV cache, batched over examples.

A session keeps, per row, how many source units it has read, the target tokens it has written and
a pending target token (the last one written; first the start token). Each `advance` is one
forward: rows that READ feed their next source unit (one or more tokens) into the source cache, and
every row's pending token is evaluated as a query over [source read so far | target written so
far]. Its next-token distribution (and, on request, its attention and final hidden state) is what a
policy decides on. On WRITE the pending token's keys/values join the target cache (they were
computed at the visibility that produced the written token, as in one masked forward pass with
that visibility) and the argmax becomes the new pending token; on READ they are dropped and the
query is evaluated again, one unit later.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch

from repro.streaming.cache import DualKVCache


@dataclass
class StepState:
    """What a policy sees after one forward (query row of every example)."""
    logits: torch.Tensor                 # [B, V] next-token logits of the pending token
    units_read: torch.Tensor             # [B] source units read so far (after this forward)
    n_units: torch.Tensor                # [B] source length in units
    written: torch.Tensor                # [B] target tokens written so far (EOS excluded)
    key_unit: torch.Tensor               # [B, K] source unit of each key (-1: not a visible source key)
    attentions: list[torch.Tensor] | None = None  # per layer [B, heads, K], the query row
    hidden: torch.Tensor | None = None   # [B, d] input of the LM head at the query

    @property
    def exhausted(self) -> torch.Tensor:
        return self.units_read >= self.n_units


@dataclass
class StreamOutput:
    tokens: list[int] = field(default_factory=list)   # written target tokens, EOS excluded
    delays: list[int] = field(default_factory=list)   # units read when each token was written
    ended: bool = False                               # EOS written (False: max_len reached)
    units_read: int = 0                               # source units read when the row ended


class StreamSession:
    def __init__(self, model, sources: list[list[list[int]]], *, start_id: int, max_len: int,
                 pad_id: int = 0, target_offset: int = 0, need_attentions: bool = False,
                 need_hidden: bool = False):
        self.model = model
        self.device = next(model.parameters()).device
        self.dtype = next(model.parameters()).dtype
        self.sources = sources
        self.width = max(len(u) for s in sources for u in s)  # source slots per forward
        self.pad_id, self.target_offset = pad_id, target_offset
        self.need_attentions, self.need_hidden = need_attentions, need_hidden
        b = len(sources)
        src_cap = max(sum(map(len, s)) for s in sources)
        self.cache = DualKVCache(b, src_cap, max_len + 1, self.device)
        self.n_units = torch.tensor([len(s) for s in sources], device=self.device)
        self.units_read = torch.zeros(b, dtype=torch.long, device=self.device)
        self.written = torch.zeros(b, dtype=torch.long, device=self.device)
        self.pending = torch.full((b,), start_id, dtype=torch.long, device=self.device)
        self.src_unit = torch.full((b, src_cap), -1, dtype=torch.long, device=self.device)
        # every source as a padded [units, width] table, so a READ is a gather
        self.unit_tokens = torch.full((b, int(self.n_units.max()), self.width), pad_id, dtype=torch.long)
        self.unit_lens = torch.zeros(b, int(self.n_units.max()), dtype=torch.long)
        for i, s in enumerate(sources):
            for j, u in enumerate(s):
                self.unit_tokens[i, j, :len(u)] = torch.tensor(u)
                self.unit_lens[i, j] = len(u)
        self.unit_tokens, self.unit_lens = self.unit_tokens.to(self.device), self.unit_lens.to(self.device)

    def _capture_hidden(self):
        store = {}
        head = self.model.get_output_embeddings()
        return store, head.register_forward_pre_hook(lambda mod, args: store.__setitem__("h", args[0]))

    @torch.no_grad()
    def advance(self, read: torch.Tensor) -> StepState:
        """One forward: rows in `read` read their next unit; every row's pending token is a query."""
        read = read & (self.units_read < self.n_units)  # never read past the source
        b, u = len(self.sources), self.width
        rows = torch.arange(b, device=self.device)
        nxt = self.units_read.clamp(max=self.unit_tokens.shape[1] - 1)
        slots = torch.where(read[:, None], self.unit_tokens[rows, nxt], self.pad_id)
        n_new = torch.where(read, self.unit_lens[rows, nxt], 0)
        cache = self.cache
        ids = torch.cat([slots, self.pending[:, None]], 1)
        pos = cache.round_positions(u, self.target_offset)
        mask = cache.round_mask(n_new, u, self.dtype)
        # unit of every key of this forward, before the new tokens are committed
        new_unit = torch.where(torch.arange(u, device=self.device)[None] < n_new[:, None],
                               self.units_read[:, None], -1)
        key_unit = torch.cat([self.src_unit, torch.full((b, cache.tgt_capacity), -1, device=self.device),
                              new_unit, torch.full((b, 1), -1, device=self.device)], 1)
        store, hook = self._capture_hidden() if self.need_hidden else ({}, None)
        try:
            out = self.model(input_ids=ids, attention_mask=mask, position_ids=pos, past_key_values=cache,
                             use_cache=True, output_attentions=self.need_attentions)
        finally:
            if hook:
                hook.remove()
        rows, cols = (torch.arange(u, device=self.device)[None] < n_new[:, None]).nonzero(as_tuple=True)
        self.src_unit[rows, cache.src_len[rows] + cols] = self.units_read[rows]
        cache.commit_source(read, n_new)
        self.units_read += read.long()
        attn = [a[:, :, -1].float() for a in out.attentions] if self.need_attentions else None
        return StepState(logits=out.logits[:, -1].float(), units_read=self.units_read.clone(),
                         n_units=self.n_units, written=self.written.clone(), key_unit=key_unit,
                         attentions=attn, hidden=store["h"][:, -1].float() if self.need_hidden else None)

    def write(self, rows: torch.Tensor, tokens: torch.Tensor) -> None:
        """Rows in `rows` write `tokens`: their pending query joins the target cache."""
        self.cache.commit_target(rows, slot=self.width)
        self.pending = torch.where(rows, tokens, self.pending)
        self.written += rows.long()


Policy = Callable[[StepState], torch.Tensor]


def stream(model, sources: list[list[list[int]]], policy: Policy, *, start_id: int, eos_id: int, max_len: int,
           pad_id: int = 0, eos_needs_full_source: bool = True, target_offset: int = 0,
           need_attentions: bool = False, need_hidden: bool = False) -> list[StreamOutput]:
    """Greedy streaming decoding of a batch of sources (each a list of units of token ids).

    Every row first reads one unit. Then, at each step, the row WRITEs when the policy says so or
    its source is exhausted, else READs one more unit. With `eos_needs_full_source`, an EOS proposed
    before the whole source is read is a READ instead. A row ends at EOS or after `max_len` tokens;
    each step either reads a unit or writes a token, so the loop ends within |units| + max_len + 1
    forwards.
    """
    session = StreamSession(model, sources, start_id=start_id, max_len=max_len, pad_id=pad_id,
                            target_offset=target_offset, need_attentions=need_attentions,
                            need_hidden=need_hidden)
    b = len(sources)
    outs = [StreamOutput() for _ in range(b)]
    done = torch.zeros(b, dtype=torch.bool, device=session.device)
    state = session.advance(torch.ones(b, dtype=torch.bool, device=session.device))
    for _ in range(int(session.n_units.max()) + max_len + 1):
        token = state.logits.argmax(-1)
        write = (policy(state) | state.exhausted) & ~done
        if eos_needs_full_source:
            write &= ~((token == eos_id) & ~state.exhausted)
        session.write(write, token)
        for i in write.nonzero(as_tuple=True)[0].tolist():
            if int(token[i]) == eos_id:
                outs[i].ended = True
            else:
                outs[i].tokens.append(int(token[i]))
                outs[i].delays.append(int(state.units_read[i]))
            if outs[i].ended or len(outs[i].tokens) >= max_len:
                done[i] = True
                outs[i].units_read = int(state.units_read[i])
        if bool(done.all()):
            return outs
        state = session.advance(~write & ~done)
    raise RuntimeError("streaming loop did not terminate")  # unreachable: every step makes progress
