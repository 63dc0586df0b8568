"""The shared decoder: equal to transformers' Llama (causal, per-row positions + 4D masks, cached
decode), token dropping with persistent positions, GEMM recording, checkpoint round trip."""
import json

import pytest
import torch

from repro.core import flops
from repro.models.decoder import Decoder, Linear, additive, keep_tokens

B, T = 2, 24
IDS = torch.randint(0, 256, (B, T), generator=torch.Generator().manual_seed(3))


@pytest.fixture
def model(hf_llama):
    return Decoder.from_hf(hf_llama)


def left_padded(pad: int):
    """Row 1 starts with `pad` padding tokens, hidden as keys (a padding query sees itself, so no row
    is fully masked); its positions count real tokens only and jump by 3 halfway, as after dropped
    tokens (a mere shift of all positions would not change attention: RoPE is relative)."""
    valid = torch.ones(B, T, dtype=torch.bool)
    valid[1, :pad] = False
    positions = (valid.long().cumsum(1) - 1).clamp(min=0)
    positions[1, T // 2:] += 3
    visible = torch.ones(T, T, dtype=torch.bool).tril() & valid[:, None, :] | torch.eye(T, dtype=torch.bool)
    return positions, additive(visible)[:, None]


def test_causal_logits_equal_transformers(hf_llama, model):
    with torch.no_grad():
        ref = hf_llama(IDS).logits
        ours, cache = model(IDS)
        from_embeds, _ = model(inputs_embeds=model.embed(IDS))
    assert (ref - ours).abs().max().item() < 1e-5
    assert torch.equal(from_embeds, ours)
    assert len(cache) == 4 and cache[0][0].shape == (B, 4, T, 8)  # 4 KV heads of dim 8


def test_per_row_positions_and_mask_equal_transformers(hf_llama, model):
    pad = 5
    positions, mask = left_padded(pad)
    with torch.no_grad():
        ref = hf_llama(IDS, attention_mask=mask, position_ids=positions).logits
        ours, _ = model(IDS, positions=positions, mask=mask)
        alone, _ = model(IDS[1:, pad:], positions=positions[1:, pad:])  # the real tokens on their own
    assert (ref - ours).abs().max().item() < 1e-5
    assert (ours[1, pad:] - alone[0]).abs().max().item() < 1e-5


def test_cached_decode_equals_full_forward(model):
    positions, mask = left_padded(5)
    with torch.no_grad():
        full, _ = model(IDS)
        _, cache = model(IDS[:, :-1])
        step, _ = model(IDS[:, -1:], cache)
        _, cache = model(IDS[:, :-3])
        chunk, _ = model(IDS[:, -3:], cache)  # several new tokens after a cache: causal among them
        full_pad, _ = model(IDS, positions=positions, mask=mask)
        _, cache = model(IDS[:, :-1], positions=positions[:, :-1], mask=mask[:, :, :-1, :-1])
        step_pad, _ = model(IDS[:, -1:], cache, positions=positions[:, -1:], mask=mask[:, :, -1:])
    assert (step[:, 0] - full[:, -1]).abs().max().item() < 1e-5
    assert (chunk - full[:, -3:]).abs().max().item() < 1e-5
    assert (step_pad[:, 0] - full_pad[:, -1]).abs().max().item() < 1e-5


def blockwise(model, ids, hidden_from: int | None = None, dropped=None, n_blocks: int | None = None):
    """The model's forward spelled out over its blocks, each with an explicit mask: causal, and from
    block `hidden_from` on the `dropped` tokens [B, T] are hidden as keys (each row sees itself)."""
    b, t = ids.shape
    h = model.embed(ids)
    rope = model.rotary(torch.arange(t).expand(b, t), h.dtype)
    causal = torch.ones(t, t, dtype=torch.bool).tril().expand(b, t, t)
    for i, block in enumerate(model.blocks[:n_blocks]):
        visible = causal
        if hidden_from is not None and i >= hidden_from:
            visible = causal & ~dropped[:, None, :] | torch.eye(t, dtype=torch.bool)
        h, _ = block(h, rope, additive(visible)[:, None])
    return model.lm_head(model.norm(h))


def test_keeping_every_token_is_the_vanilla_forward(model):
    with torch.no_grad():
        vanilla, _ = model(IDS)
        kept, _ = model(IDS, before_layer=lambda i, h, pos, mask: keep_tokens(torch.arange(T).expand(B, T), h, pos, mask))
    assert torch.equal(kept, vanilla)


@pytest.mark.parametrize("explicit_mask", [False, True])
def test_dropped_tokens_leave_the_sequence_and_kept_ones_keep_their_positions(model, explicit_mask):
    g = torch.Generator().manual_seed(0)
    keep = torch.stack([torch.randperm(T, generator=g)[:10].sort().values for _ in range(B)])  # per row
    dropped = torch.ones(B, T, dtype=torch.bool).scatter(1, keep, False)
    seen = {}

    def select(i, h, positions, mask):
        seen[i] = positions.clone()
        return keep_tokens(keep.flip(1), h, positions, mask) if i == 2 else None  # in any order

    mask = additive(torch.ones(T, T, dtype=torch.bool).tril())[None, None] if explicit_mask else None
    with torch.no_grad():
        with flops.record_gemms() as log:
            logits, cache = model(IDS, before_layer=select, mask=mask)
        ref = blockwise(model, IDS, hidden_from=2, dropped=dropped)
    assert logits.shape == (B, 10, 256)
    assert (logits - ref.gather(1, keep[..., None].expand(-1, -1, 256))).abs().max().item() < 1e-5
    assert torch.equal(seen[3], keep)  # positions stay those of the full sequence
    m = {g.name: g.m for g in log if g.name.endswith(".q")}
    assert m["L1.q"] == B * T and m["L2.q"] == m["L3.q"] == B * 10
    assert cache[1][0].shape[2] == T and cache[2][0].shape[2] == 10


def test_early_exit_runs_only_the_first_blocks(model):
    with torch.no_grad():
        early, cache = model(IDS, exit_after=2)
        ref = blockwise(model, IDS, n_blocks=2)
    assert len(cache) == 2 and (early - ref).abs().max().item() < 1e-5


def test_gemm_shapes_of_every_projection(model):
    with torch.no_grad(), flops.record_gemms() as log:
        model(IDS)
    g = {x.name: x for x in log}
    m = B * T
    for op, n, k in (("q", 64, 64), ("k", 32, 64), ("v", 32, 64), ("o", 64, 64),
                     ("gate", 96, 64), ("up", 96, 64), ("down", 64, 96)):
        assert (g[f"L0.{op}"].m, g[f"L0.{op}"].n, g[f"L0.{op}"].k) == (m, n, k)
        assert g[f"L0.{op}"].bytes == n * k * 4 and g[f"L0.{op}"].declared_k is None
    qk = g["L0.attn.qk"]
    assert (qk.m, qk.n, qk.k, qk.count) == (T, T, 8, B * 8) and qk.density == pytest.approx((T + 1) / (2 * T))


def test_declared_k_is_recorded_beside_the_executed_k():
    lin = Linear("w", 16, 32, declared_k=16)  # a 2:4 layer: dense weights, half of K declared
    with flops.record_gemms() as log:
        lin(torch.zeros(5, 32))
    (g,) = log
    assert (g.m, g.n, g.k, g.declared_k) == (5, 16, 32, 16)
    assert g.declared == (5, 16, 16) and g.flops == 2 * 5 * 16 * 32 and g.bytes == 16 * 32 * 4


def test_checkpoint_round_trip_of_a_pruned_structure(model, tmp_path):
    structure = model.structure()
    structure["blocks"][1]["mlp"] = None  # a removed FFN sublayer
    structure["blocks"][2]["attn"]["q"]["declared_k"] = 32
    pruned = Decoder(structure)
    pruned.load_state_dict({k: v for k, v in model.state_dict().items() if k in pruned.state_dict()})
    pruned.save(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "model.safetensors"]
    assert json.loads((tmp_path / "config.json").read_text()) == structure
    loaded = Decoder.load(tmp_path)
    assert loaded.structure() == structure and loaded.blocks[1].mlp is None
    with torch.no_grad():
        assert torch.equal(loaded(IDS)[0], pruned(IDS)[0])
        assert not torch.equal(loaded(IDS)[0], model(IDS)[0])
