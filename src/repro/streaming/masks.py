"""Group position ids and streaming attention masks for one masked forward pass.

Layout of a row: a source block of `src_width` tokens (padded at its end), then a target block of
`tgt_width` tokens. Source tokens take positions 0..src_width-1; target positions restart at
`target_offset` (group position encoding). transformers reads a position reset without a mask as a
packed-sequence boundary (the target would silently stop seeing the source), so these masks are
always passed as explicit 4D additive masks [B, 1, L, L].
"""
from __future__ import annotations

import torch


def group_position_ids(batch: int, src_width: int, tgt_width: int, target_offset: int = 0) -> torch.Tensor:
    """[B, src_width + tgt_width]: source 0..S-1, target restarting at `target_offset`."""
    src = torch.arange(src_width)
    tgt = torch.arange(tgt_width) + target_offset
    return torch.cat([src, tgt]).expand(batch, -1).clone()


def streaming_allowed(src_len: torch.Tensor, tgt_len: torch.Tensor, visibility: torch.Tensor,
                      src_width: int, tgt_width: int) -> torch.Tensor:
    """Who sees what, bool [B, L, L] (query, key), L = src_width + tgt_width.

    Source token i sees source tokens 0..i (causal). Target row t sees the first `visibility[b, t]`
    source tokens and target rows 0..t; it never sees a source token beyond the row's visibility,
    and no source token ever sees a target. Padding rows see only themselves (no all-masked softmax).
    """
    b = src_len.shape[0]
    s, t = torch.arange(src_width), torch.arange(tgt_width)
    src_valid = s[None, :] < src_len[:, None]                       # [B, S]
    tgt_valid = t[None, :] < tgt_len[:, None]                       # [B, T]
    vis = torch.minimum(visibility, src_len[:, None])               # never past the real source
    ss = (s[:, None] >= s[None, :])[None] & src_valid[:, None, :] & src_valid[:, :, None]
    ts = (s[None, None, :] < vis[:, :, None]) & tgt_valid[:, :, None]
    tt = (t[:, None] >= t[None, :])[None] & tgt_valid[:, None, :] & tgt_valid[:, :, None]
    top = torch.cat([ss, torch.zeros(b, src_width, tgt_width, dtype=torch.bool)], 2)
    bottom = torch.cat([ts, tt], 2)
    allowed = torch.cat([top, bottom], 1)
    valid = torch.cat([src_valid, tgt_valid], 1)
    eye = torch.eye(src_width + tgt_width, dtype=torch.bool)[None]
    return allowed | (eye & ~valid[:, :, None])


def additive(allowed: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """bool [B, Q, K] -> additive float mask [B, 1, Q, K] (0 where allowed, dtype min elsewhere);
    eager attention adds the mask to the scores, so a bool mask would be wrong there."""
    zero = torch.zeros((), dtype=dtype, device=allowed.device)
    return torch.where(allowed, zero, torch.finfo(dtype).min)[:, None]


def streaming_mask(src_len, tgt_len, visibility, src_width: int, tgt_width: int,
                   dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return additive(streaming_allowed(src_len, tgt_len, visibility, src_width, tgt_width), dtype)


def group_visibility_allowed(group: torch.Tensor, sees: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Causal attention under a frame-group visibility rule (TaYS), bool [B, L, L] (query, key).

    Per token: `group` [B, L] is a video token's frame group (-1 for text), `sees` [B, L] the last
    frame group a reasoning token may see (-1 for prompt and video tokens). On top of causal order:
    a reasoning row sees video keys of groups <= its `sees` only, a video row never sees a reasoning
    key, and padding (valid False) is seen by nobody and sees only itself. With every reasoning
    token's `sees` at the last group this is the plain causal mask.
    """
    n = group.shape[1]
    idx = torch.arange(n, device=group.device)
    causal = (idx[:, None] >= idx[None, :])[None]
    reasoning = sees >= 0
    hidden_video = reasoning[:, :, None] & (group[:, None, :] > sees[:, :, None])
    video_sees_reasoning = (group >= 0)[:, :, None] & reasoning[:, None, :]
    allowed = causal & valid[:, None, :] & valid[:, :, None] & ~hidden_video & ~video_sees_reasoning
    return allowed | (torch.eye(n, dtype=torch.bool, device=group.device)[None] & ~valid[:, :, None])
