"""UTPTrack: the pruning mechanism on constructed attention (centre-token query, +1 and token-type
bonuses, ceil keep counts, global indices, pruning before the MLP, zero-restored search map), tokens
per block counted in the forward against a hand count, the video generator and crops, tracking
metrics on hand-computed boxes, the HF ViT mapping, null and clear effects for U1-U3 through the
claims' checks (crossed seeds x sequences intervals), failed regimes and a failed seed A/A control,
latency effects judged against the A/A control, and the `paper` profile's code path on local files."""
import copy
import json

import numpy as np
import pytest
import torch
import yaml

from conftest import run_stage

from repro.core import config as rc
from repro.core.timing import AA
from repro.data import video
from repro.models import centre_head
from repro.papers.utptrack import effects, method
from repro.papers.utptrack.method import Pruning, Tokens
from repro.report.verdicts import evaluate_claims

# ---------------------------------------------------------------- pruning on constructed attention

NX, NS, ND = 4, 3, 2  # search, static template (centre = index 1), dynamic template
L = NX + NS + ND
Q = NX + 1  # sequence position of the static template's centre token


def tokens(fg=(0.0, 0.0, 0.0)) -> Tokens:
    ar = lambda n, off: (torch.arange(n) + off).view(1, n, 1).float().expand(1, n, 2)  # noqa: E731
    return Tokens(x=ar(NX, 0), s=ar(NS, 100), d=ar(ND, 200), idx_x=torch.arange(NX)[None],
                  idx_s=torch.arange(NS)[None], idx_d=torch.arange(ND)[None],
                  centre=torch.tensor([[False, True, False]]), fg=torch.tensor([fg]))


def constructed_probs(query_row: list[float]) -> torch.Tensor:
    """[1, 2, L, L]: the query row as given (same in both heads); every other row prefers the
    opposite tokens, so scoring from any other row would pick differently."""
    row = torch.tensor(query_row)
    probs = (1 - row).expand(1, 2, L, L).clone()
    probs[0, :, Q] = row
    return probs


def test_ce_scores_come_from_the_static_centre_row_and_keep_ceil_global_indices():
    # query attends to search tokens 1 and 3 most; keep ceil(0.4 * 4) = 2
    probs = constructed_probs([0.1, 0.5, 0.0, 0.3, 0, 0, 0, 0, 0])
    t = tokens()
    assert t.query().tolist() == [Q]
    out = method.prune(t, probs, Pruning({"ce": (0,)}, {"ce": 0.4}), block=0, warm=0.0)
    assert out.idx_x.tolist() == [[1, 3]]  # ascending position order
    assert out.x[0, :, 0].tolist() == [1.0, 3.0]
    assert out.s.shape[1] == NS and out.d.shape[1] == ND  # other groups untouched
    # a second CE step works on the survivors and still reports positions in the original input
    probs2 = torch.zeros(1, 2, 2 + NS + ND, 2 + NS + ND)
    probs2[0, :, 2 + 1] = torch.tensor([0.2, 0.7, 0, 0, 0, 0, 0])  # survivor 1 (global 3) wins
    out2 = method.prune(out, probs2, Pruning({"ce": (1,)}, {"ce": 0.5}), block=1, warm=0.0)
    assert out2.idx_x.tolist() == [[3]]


def test_dte_scores_dynamic_tokens_from_the_query_row():
    probs = constructed_probs([0, 0, 0, 0, 0, 0, 0, 0.2, 0.6])
    out = method.prune(tokens(), probs, Pruning({"dte": (0,)}, {"dte": 0.5}), block=0, warm=0.0)
    assert out.idx_d.tolist() == [[1]] and out.d[0, 0, 0].item() == 201.0


def test_ste_centre_bonus_and_token_type_bonus():
    # static tokens: 0 attends 0.30, centre 1 attends 0.00, 2 attends 0.25
    probs = constructed_probs([0, 0, 0, 0, 0.30, 0.00, 0.25, 0, 0])
    t = tokens(fg=(0.0, 1.0, 0.9))
    scores = method.ste_scores(probs, t.query(), NX, t.centre, t.fg, token_type=False)
    assert torch.allclose(scores, torch.tensor([[0.30, 1.00, 0.25]]))
    aware = method.ste_scores(probs, t.query(), NX, t.centre, t.fg, token_type=True)
    assert torch.allclose(aware, torch.tensor([[0.30, 2.00, 1.15]]))
    # keep ceil(0.34 * 3) = 2: the centre always survives; the foreground bonus decides the other
    plain = method.prune(t, probs, Pruning({"ste": (0,)}, {"ste": 0.34}), 0, 0.0)
    typed = method.prune(t, probs, Pruning({"ste": (0,)}, {"ste": 0.34}, token_type=True), 0, 0.0)
    assert plain.idx_s.tolist() == [[0, 1]] and typed.idx_s.tolist() == [[1, 2]]
    # the query flag and foreground travel with the kept tokens
    assert typed.centre.tolist() == [[True, False]] and typed.fg[0].tolist() == pytest.approx([1.0, 0.9])
    assert typed.query().tolist() == [NX]
    # keep ceil(0.1 * 3) = 1: only the centre, although it has the lowest attention
    only = method.prune(t, probs, Pruning({"ste": (0,)}, {"ste": 0.1}), 0, 0.0)
    assert only.idx_s.tolist() == [[1]]


def test_all_modules_of_a_block_score_the_pre_pruning_layout():
    row = [0.1, 0.5, 0.0, 0.3, 0.2, 0.0, 0.1, 0.2, 0.6]
    probs = constructed_probs(row)
    both = method.prune(tokens(), probs, Pruning({"ce": (0,), "dte": (0,), "ste": (0,)},
                                                 {"ce": 0.5, "dte": 0.5, "ste": 0.34}), 0, 0.0)
    assert both.idx_x.tolist() == [[1, 3]] and both.idx_d.tolist() == [[1]] and both.idx_s.tolist() == [[0, 1]]


def test_keep_counts_use_ceil():
    assert method.keep_count(64, 0.7) == 45  # 44.8 -> 45
    assert method.keep_count(45, 0.7) == 32  # 31.5 -> 32
    assert method.keep_count(25, 0.6) == 15  # exactly 15, not 16 from float noise
    assert method.keep_count(15, 0.6) == 9
    assert method.keep_count(9, 0.6) == 6  # 5.4 -> 6
    assert method.keep_count(10, 1.0) == 10


def test_warmup_and_ratio():
    w = [method.warmup_weight(s, 100, 0.1, 0.5) for s in range(100)]
    assert w[0] == w[9] == 1.0 and w[50] == w[99] == 0.0
    assert w[30] == pytest.approx(0.5) and all(a >= b for a, b in zip(w, w[1:]))
    p = Pruning({"ce": (2,)}, {"ce": 0.7})
    assert p.ratio("ce", 2, 1.0) == 1.0 and p.ratio("ce", 2, 0.0) == 0.7
    assert p.ratio("ce", 2, 0.5) == pytest.approx(0.85) and p.ratio("ce", 3, 0.0) == 1.0


def test_restore_search_puts_zeros_at_pruned_positions():
    x = torch.tensor([[[1.0, 1.0], [2.0, 2.0]]])
    full = method.restore_search(x, torch.tensor([[3, 1]]), 5)
    assert full[0].tolist() == [[0, 0], [2, 2], [0, 0], [1, 1], [0, 0]]


TINY = {"hidden_size": 16, "num_hidden_layers": 4, "num_attention_heads": 2, "intermediate_size": 32,
        "patch_size": 8, "head_channels": 8}
CROPS = {"template_size": 40, "search_size": 64}
UTP = Pruning({"ce": (1, 3), "dte": (2,), "ste": (2,)}, {"ce": 0.7, "dte": 0.6, "ste": 0.6}, token_type=True)


def tiny_tracker():
    torch.manual_seed(0)
    return method.build_tracker(TINY, CROPS).eval()


def inputs(B=2):
    g = torch.Generator().manual_seed(1)
    return {"search": torch.randn(B, 3, 64, 64, generator=g), "static": torch.randn(B, 3, 40, 40, generator=g),
            "dynamic": torch.randn(B, 3, 40, 40, generator=g), "fg_static": torch.rand(B, 25, generator=g),
            "fg_dynamic": torch.rand(B, 25, generator=g)}


def test_pruning_happens_after_attention_and_before_the_mlp(monkeypatch):
    from repro.models.vit import Block

    model = tiny_tracker()
    model.pruning = UTP
    seen = []
    attend, ff = Block.attend, Block.feed_forward
    monkeypatch.setattr(Block, "attend", lambda self, x, need_probs=False: (
        seen.append(("attn", x.shape[1], need_probs)), attend(self, x, need_probs))[1])
    monkeypatch.setattr(Block, "feed_forward", lambda self, x: (seen.append(("mlp", x.shape[1])), ff(self, x))[1])
    out = model(**inputs())
    # block 1: CE 64 -> 45 between attention (114) and MLP (95); block 2: DTE/STE 25 -> 15 each
    assert seen[2:6] == [("attn", 114, True), ("mlp", 95, ), ("attn", 95, True), ("mlp", 75)]
    assert seen[0] == ("attn", 114, False)  # blocks that prune nothing use fused attention
    assert out.counts == [(64, 25, 25), (45, 25, 25), (45, 15, 15), (32, 15, 15)]
    trace = method.token_trace(UTP, 4, 64, 25)
    assert [(b["search"], b["static"], b["dynamic"]) for b in trace] == out.counts


# UTP on 4 blocks, by hand: block 0 reads 64 + 25 + 25 = 114 and keeps all; block 1 reads 114, CE keeps
# ceil(0.7 * 64) = 45 for its MLP (95); block 2 reads 95, DTE and STE keep ceil(0.6 * 25) = 15 each
# (45 + 15 + 15 = 75); block 3 reads 75, CE keeps ceil(0.7 * 45) = 32 (32 + 15 + 15 = 62)
HAND = [(114, 114), (114, 95), (95, 75), (75, 62)]


def test_forward_counts_the_tokens_each_block_processed():
    model = tiny_tracker()
    model.pruning = UTP
    assert model(**inputs()).processed == HAND
    model.pruning = Pruning()
    assert model(**inputs()).processed == [(114, 114)] * 4


def test_tracking_measures_tokens_per_block_and_the_pruned_fractions():
    from repro.papers.utptrack import evaluate

    model = tiny_tracker()
    model.pruning = UTP
    spec = video.VideoSpec(frame_size=64, frames=4, target_size=(10.0, 14.0))
    videos = video.Videos(video.render_split((3, 0), 2, spec))
    crops = {"template_factor": 2.0, "search_factor": 4.0, **CROPS}
    ev = {"update_interval": 2, "update_threshold": 0.0, "precision_px": 20, "clip_margin": 2}
    scores, _ = evaluate.evaluate(model, videos, crops, ev)
    trace = scores["token_trace"]
    assert [(b["in"], b["out"]) for b in trace] == HAND
    assert [(b["search"], b["static"], b["dynamic"]) for b in trace] == [(64, 25, 25), (45, 25, 25), (45, 15, 15),
                                                                        (32, 15, 15)]
    pruned = scores["tokens_pruned"]
    assert pruned["block_mean"] == pytest.approx(1 - (114 + 114 + 95 + 75) / (4 * 114))  # block 3's pruning: no count
    assert pruned["final"] == pytest.approx(1 - 62 / 114)
    assert pruned["mlp_block_mean"] == pytest.approx(1 - (114 + 95 + 75 + 62) / (4 * 114))
    assert len(scores["per_sequence_auc"]) == 2


def test_head_sees_full_search_map_with_zeros_where_pruned():
    model = tiny_tracker()
    model.pruning = Pruning({"ce": (3,)}, {"ce": 0.5})
    captured = {}
    model.head.register_forward_pre_hook(lambda m, args: captured.update(fmap=args[0]))
    model(**inputs())
    fmap = captured["fmap"]  # [B, D, 8, 8]
    assert fmap.shape == (2, 16, 8, 8)
    zero = (fmap.abs().sum(1) == 0).flatten(1)
    assert zero.sum(1).tolist() == [32, 32]  # 64 - ceil(0.5 * 64) restored as zeros
    # pruning at full keep changes nothing
    model.pruning = Pruning({"ce": (3,)}, {"ce": 1.0})
    ref = tiny_tracker()
    assert torch.equal(model(**inputs()).score, ref(**inputs()).score)


def test_warmup_weight_one_means_no_pruning():
    model = tiny_tracker()
    ref = model(**inputs()).score
    model.pruning, model.warm = UTP, 1.0
    out = model(**inputs())
    assert out.counts == [(64, 25, 25)] * 4 and torch.equal(out.score, ref)


MINI_VIT = {"hidden_size": 64, "intermediate_size": 256, "patch_size": 8, "num_hidden_layers": 8}


def test_macs_and_tokens_pruned_of_the_mini_schedule():
    p = rc.load_paper("utptrack")["mini"]
    utp = method.Pruning.from_variant(p["variants"]["utptrack"])
    trace = method.token_trace(utp, 8, 64, 25)
    # DTE/STE in 3/5/6: block 6 prunes all three groups (32 -> 23, 9 -> 6, 9 -> 6), block 7 prunes nothing
    assert [b["in"] for b in trace] == [114, 114, 114, 95, 75, 62, 50, 35]
    assert [b["out"] for b in trace] == [114, 114, 95, 75, 62, 50, 35, 35]
    pruned = method.tokens_pruned(trace)
    assert pruned["final"] == pytest.approx(1 - 35 / 114)
    assert pruned["block_mean"] == pytest.approx(1 - (114 * 3 + 95 + 75 + 62 + 50 + 35) / (8 * 114))
    d, h = 64, 256
    full = method.token_trace(Pruning(), 8, 64, 25)
    m = method.macs(full, MINI_VIT, 64, 25, 64)
    assert m["blocks"] == 8 * (4 * 114 * d * d + 2 * 114**2 * d + 2 * 114 * d * h)
    assert method.backbone_macs(Pruning(), MINI_VIT, 64, 25) == m["blocks"]


@pytest.mark.parametrize("arm, modules", [("search_only", ("ce",)), ("template_only", ("dte", "ste"))])
def test_isolated_arms_match_the_unified_backbone_macs(arm, modules):
    p = rc.load_paper("utptrack")["mini"]
    utp = method.Pruning.from_variant(p["variants"]["utptrack"])
    budget = method.backbone_macs(utp, MINI_VIT, 64, 25)
    resolved = method.resolve_variant(arm, p["variants"], MINI_VIT, 64, 25)
    assert set(resolved.blocks) == set(modules) and len(set(resolved.keep.values())) == 1
    keep = resolved.keep[modules[0]]

    def cost(r):
        return method.backbone_macs(Pruning(resolved.blocks, {m: r for m in modules}), MINI_VIT, 64, 25)

    # at least the unified arm's MACs, within the tolerance; 0.01 less keep would be below the budget
    assert budget <= cost(keep) <= budget * (1 + method.BUDGET_TOLERANCE)
    assert cost(round(keep - 0.01, 2)) < budget
    assert resolved.token_type == (arm == "template_only")


def test_unreachable_budgets_and_last_block_pruning_are_errors():
    p = rc.load_paper("utptrack")["mini"]
    variants = copy.deepcopy(p["variants"])
    # templates alone, in the unified arm's template blocks: even one token per template costs more
    variants["template_only"]["dte"]["blocks"] = variants["template_only"]["ste"]["blocks"] = [3, 5, 6]
    with pytest.raises(ValueError, match="cannot come down to the matched budget"):
        method.resolve_variant("template_only", variants, MINI_VIT, 64, 25)
    variants["utptrack"]["dte"]["blocks"] = [3, 5, 7]
    with pytest.raises(ValueError, match="last block"):
        method.resolve_variant("utptrack", variants, MINI_VIT, 64, 25)
    with pytest.raises(ValueError, match="do not exist"):
        method.resolve_variant("ce_dte_ste", p["variants"], {**MINI_VIT, "num_hidden_layers": 6}, 64, 25)


def test_loss_targets_and_decode():
    target = torch.tensor([[0.55, 0.30, 0.25, 0.20]])
    heat = centre_head.gaussian_heatmap(target, 8)
    assert heat[0, 2, 4] == 1.0 and heat.eq(1).sum() == 1  # cell (row 2, col 4) holds the centre
    size = torch.zeros(1, 2, 8, 8)
    offset = torch.zeros(1, 2, 8, 8)
    size[0, :, 2, 4] = torch.tensor([0.25, 0.20])
    offset[0, :, 2, 4] = torch.tensor([0.4, 0.4])
    score = torch.full((1, 8, 8), -5.0)
    score[0, 2, 4] = 5.0
    box, conf = centre_head.decode(score, size, offset, None)
    assert torch.allclose(box, target) and conf.item() == pytest.approx(torch.sigmoid(torch.tensor(5.0)).item())
    g, iou = centre_head.giou(centre_head.cxcywh_to_xyxy(box), centre_head.cxcywh_to_xyxy(target))
    assert g.item() == pytest.approx(1.0) and iou.item() == pytest.approx(1.0)
    fg = method.foreground_fraction(torch.tensor([[4.0, 0.0, 8.0, 12.0]]), 16, 8)  # 2 x 2 patches
    assert fg[0].tolist() == pytest.approx([0.5, 0.5, 0.25, 0.25])


# ---------------------------------------------------------------- generator, crops, metrics

SPEC = video.VideoSpec(frame_size=96, frames=30, target_size=(12.0, 20.0))


def test_generator_is_deterministic_and_boxes_stay_in_frame():
    f1, b1 = video.render_video((0, 3), SPEC)
    f2, b2 = video.render_video((0, 3), SPEC)
    f3, _ = video.render_video((0, 4), SPEC)
    assert np.array_equal(f1, f2) and np.array_equal(b1, b2) and not np.array_equal(f1, f3)
    assert f1.shape == (30, 96, 96, 3) and f1.dtype == np.uint8
    for seed in range(20):
        _, b = video.render_video((1, seed), SPEC)
        assert (b[:, :2] >= -1e-4).all() and (b[:, :2] + b[:, 2:] <= 96 + 1e-4).all()
        size = np.sqrt(b[:, 2] * b[:, 3])
        assert (size >= 12 - 1e-3).all() and (size <= 20 + 1e-3).all()
        assert np.abs(np.diff(b[:, :2], axis=0)).max() < 10  # smooth motion


def test_crop_geometry():
    frame = np.zeros((50, 50, 3), np.uint8)
    frame[10:20, 20:40] = 255
    box = np.array([20.0, 10.0, 20.0, 10.0])
    win = video.crop_window(box, 2.0)
    assert win[2] == pytest.approx(2 * np.sqrt(200))
    inside = video.box_to_crop(box, win, 40)
    assert inside[:2] + inside[2:] / 2 == pytest.approx([20.0, 20.0])  # centred
    assert video.box_from_crop(inside, win, 40) == pytest.approx(box, abs=1e-4)
    patch = video.crop(frame, (20.0, 10.0, 10.0), 10)  # 1:1 crop of the white block's corner
    assert patch[2:8, 2:8].min() == pytest.approx(1.0)
    out = video.crop(frame, (-100.0, -100.0, 20.0), 4)  # entirely outside: the frame's mean colour
    assert out == pytest.approx(np.full((4, 4, 3), frame[::4, ::4].mean() / 255), abs=1e-6)


def test_iou_success_and_precision_on_hand_computed_boxes():
    assert video.box_iou([[0, 0, 10, 10]], [[5, 5, 10, 10]])[0] == pytest.approx(25 / 175)
    assert video.box_iou([[0, 0, 10, 10]], [[20, 0, 5, 5]])[0] == 0.0
    gt = np.array([[0, 0, 10, 10]] * 4, float)
    # frame 0 is the given box (as the tracker reports it) and counts, as in pytracking / got10k
    pred = np.array([[0, 0, 10, 10], [50, 50, 1, 1], [0, 0, 10, 10], [0, 0, 10, 5]], float)
    s = video.sequence_scores(pred, gt, precision_px=2.0)
    # IoU 1 exceeds 20 of 21 thresholds (not 1.0), IoU 0.5 exceeds 10 (0 .. 0.45), IoU 0 none
    assert s["auc"] == pytest.approx((20 + 0 + 20 + 10) / 84)
    # centre errors 0, 49 (normalised 4.9), 0 and 2.5 px (normalised 0.25: above 0.2)
    assert s["precision"] == 0.5 and video.sequence_scores(pred, gt, 2.5)["precision"] == 0.75
    assert s["norm_precision"] == 0.5
    near = pred.copy()
    near[3] = [0, 0, 10, 6]  # centre error 2 px = 0.2 of the height: counts (<= 0.2)
    assert video.sequence_scores(near, gt, 2.0)["norm_precision"] == 0.75
    both = video.dataset_scores([pred, gt], [gt, gt], 2.0)
    assert both["auc"] == pytest.approx((50 / 84 + 20 / 21) / 2)
    assert both["per_sequence_auc"] == pytest.approx([50 / 84, 20 / 21])


def test_training_sample_boxes_match_crops(tmp_path):
    ds = video.render_split((0, 0), 2, video.VideoSpec(frame_size=96, frames=10, target_size=(12.0, 20.0)))
    videos = video.Videos(ds)
    assert len(videos) == 2 and videos.length(1) == 10
    assert videos.frame(1, 3).dtype == np.uint8
    assert np.array_equal(videos.frame(1, 3), np.asarray(ds[13]["image"]))
    crops = {"template_factor": 2.0, "search_factor": 4.0, "template_size": 40, "search_size": 64,
             "center_jitter": 0.5, "scale_jitter": 0.15, "max_gap": 5}
    a = video.training_sample(videos, np.random.default_rng(0), crops)
    b = video.training_sample(videos, np.random.default_rng(0), crops)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert a["static"].shape == (40, 40, 3) and a["search"].shape == (64, 64, 3)
    assert a["static_box"][:2] + a["static_box"][2:] / 2 == pytest.approx([20, 20], abs=1e-3)
    sb = a["search_box"]  # jitter keeps the target in the search crop
    assert sb[0] >= 0 and sb[1] >= 0 and sb[0] + sb[2] <= 64 and sb[1] + sb[3] <= 64


# ---------------------------------------------------------------- HF mapping, claims, params


def test_hf_vit_maps_to_the_same_function(tmp_path):
    from transformers import ViTConfig, ViTModel

    from repro.models.vit import from_hf

    torch.manual_seed(0)
    cfg = ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                    image_size=32, patch_size=8)
    hf = ViTModel(cfg, add_pooling_layer=False).eval()
    hf.save_pretrained(tmp_path / "vit")
    vit, grid = from_hf(str(tmp_path / "vit"))
    img = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        ref = hf(pixel_values=img).last_hidden_state
        pos = hf.embeddings.position_embeddings[0]
        x = torch.cat([(hf.embeddings.cls_token[0] + pos[:1]).expand(2, 1, 32),
                       vit.patch_embed(img) + pos[1:]], dim=1)
        for blk in vit.blocks:
            x = blk(x)
        assert torch.allclose(vit.norm(x), ref, atol=1e-5)
    assert torch.equal(grid, pos[1:])


SEQS, SEEDS, AA_SEEDS = 24, (0, 1, 2), (100, 101, 102)
ROLES = {"baseline": "baseline", "unified": "utptrack", "unaware": "ce_dte_ste", "search_only": "search_only",
         "template_only": "template_only"}
ARMS = {"baseline": 0, "utptrack": 0, "ce_dte_ste": 0, "search_only": 0, "template_only": 0}
TRIVIAL = 0.1  # AUC of the tracker that never moves, per sequence, in the constructed runs


def run_metrics(per_seq: np.ndarray, block_in: list[float], free: np.ndarray | None = None,
                trivial: float = TRIVIAL) -> dict:
    """One evaluate job's metrics: per-sequence AUCs and a measured token trace (templates lose
    tokens in proportion to the whole sequence)."""
    def mode(aucs):
        trace = [{"in": n, "out": n, "search": n * 64 / 114, "static": n * 25 / 114, "dynamic": n * 25 / 114}
                 for n in block_in]
        return {"auc": float(aucs.mean()), "per_sequence_auc": aucs.tolist(), "precision": 0.5,
                "norm_precision": 0.4, "template_updates": 3, "success": [0.5] * 21, "token_trace": trace,
                "tokens_pruned": method.tokens_pruned(trace), "tokens_in": {"search": 64, "template": 25},
                "macs": {"blocks": 1e6 * sum(block_in), "total": 1e6 * (sum(block_in) + 1)}}
    out = {"finetuned": mode(per_seq), "keep": {}, "trivial": {"per_sequence_auc": [trivial] * len(per_seq)}}
    if free is not None:
        out["training_free"] = mode(free)
    return out


def constructed_evals(aucs: dict, pruned_in: list[float], trivial: float = TRIVIAL) -> dict:
    """variant -> seed -> metrics from per-seed per-sequence AUC arrays; pruned variants read
    `pruned_in` tokens per block, the baseline 114; UTPTrack is also evaluated training-free."""
    return {name: {s: run_metrics(a, [114.0] * len(pruned_in) if name == "baseline" else pruned_in,
                                  a * 0.5 if name == "utptrack" else None, trivial)
                   for s, a in zip(SEEDS, per_seed)} for name, per_seed in aucs.items()}


def aa_evals(aucs: dict, shift: float = 0.0) -> dict:
    """The baseline again on the A/A seeds: the same arm (its per-seed draws, in order), moved by `shift`."""
    return {s: run_metrics(a + shift, [114.0] * 8) for s, a in zip(AA_SEEDS, aucs["baseline"])}


def stable_latency() -> dict:
    same = {"baseline_s": [1.0, 1.01, 0.99, 1.0], "variant_s": [1.0, 0.99, 1.01, 1.0]}
    return {"pairs": {"b1": {AA: same, "utptrack": {"baseline_s": [1.0] * 4, "variant_s": [0.5, 0.52, 0.49, 0.5]}}}}


def verdicts_for(aucs: dict, pruned_in: list[float], trivial: float = TRIVIAL, aa_shift: float = 0.0,
                 aa: dict | None = None) -> dict:
    m = effects.decide(constructed_evals(aucs, pruned_in, trivial), stable_latency(), ROLES, None,
                       aa if aa is not None else aa_evals(arms(ARMS, noise=0.005, seed=9), aa_shift))
    return {v["id"]: v for v in evaluate_claims(rc.load_paper("utptrack")["claims"], m)}, m


def arms(offsets: dict, noise: float, seed: int = 0) -> dict:
    """Per-sequence AUCs: a shared per-sequence difficulty plus per-arm offsets and independent noise."""
    rng = np.random.default_rng(seed)
    difficulty = rng.uniform(0.3, 0.8, SEQS)
    return {name: [np.clip(difficulty + off + rng.normal(0, noise, SEQS), 0, 1) for _ in SEEDS]
            for name, off in offsets.items()}


def aa_like(aucs: dict, noise: float, seed: int) -> dict:
    """A/A runs of the baseline: its per-sequence difficulty, fresh seed noise."""
    rng = np.random.default_rng(seed)
    base = np.mean(aucs["baseline"], 0)
    return {s: run_metrics(np.clip(base + rng.normal(0, noise, SEQS), 0, 1), [114.0] * 8) for s in AA_SEEDS}


# 65% pruned on the block mean: mean of the tokens read per block = 0.35 x 114
CLEAR_IN = [114.0, 40.0, 30.0, 30.0, 30.0, 30.0, 25.0, 20.2]
NULL_IN = [114.0, 114.0, 114.0, 95.0, 75.0, 62.0, 50.0, 41.0]  # the mini schedule: 27% by the block mean


def test_u1_clear_effect_is_reproduced():
    aucs = arms(ARMS, noise=0.005)
    v, m = verdicts_for(aucs, CLEAR_IN, aa=aa_like(aucs, 0.005, 3))
    tokens = m["u1"]["tokens_pruned_block_mean"]
    assert tokens["unit"] == "by design" and tokens["value"] == pytest.approx(0.65)
    assert m["u1"]["relative_auc"]["ci"][0] > 0.97
    assert v["U1"]["regime"] == "met" and m["controls"]["seed_aa_ratio"]["passed"]
    assert [c["verdict"] for c in v["U1"]["checks"]] == ["reproduced", "reproduced"] and v["U1"]["verdict"] == "reproduced"


def test_u1_null_effects_are_not_reproduced():
    # accuracy kept, but the block-mean pruning of the mini schedule stays below 60%
    v, m = verdicts_for(arms(ARMS, noise=0.005), NULL_IN)
    assert m["u1"]["tokens_pruned_block_mean"]["value"] == pytest.approx(1 - 665 / 912)
    assert v["U1"]["checks"][0]["verdict"] == "not reproduced" and v["U1"]["checks_verdict"] == "not reproduced"
    # enough tokens pruned, but AUC at 97% of the baseline's, give or take noise: undecided or not reproduced
    aucs = arms(ARMS, noise=0.01)
    rng = np.random.default_rng(5)
    aucs["utptrack"] = [0.97 * b + rng.normal(0, 0.03, SEQS) for b in aucs["baseline"]]
    v, m = verdicts_for(aucs, CLEAR_IN)
    assert m["u1"]["relative_auc"]["value"] == pytest.approx(0.97, abs=0.01)
    assert v["U1"]["checks"][1]["verdict"] in ("inconclusive", "not reproduced")


def test_ratio_is_the_ratio_of_means_with_a_paired_interval():
    a = {0: np.array([0.5, 0.7]), 1: np.array([0.4, 0.6]), 2: np.array([0.6, 0.6])}
    b = {0: np.array([0.6, 0.8]), 1: np.array([0.5, 0.7]), 2: np.array([0.6, 0.7])}
    r = effects.ratio(a, b)
    assert r["value"] == pytest.approx(np.mean([0.6, 0.5, 0.6]) / np.mean([0.7, 0.6, 0.65]))
    assert r["ci"][0] <= r["value"] <= r["ci"][1] and r["n"] == 3 and r["n_items"] == 2
    assert effects.ratio(b, b)["ci"] == pytest.approx([1.0, 1.0])  # identical arms: no spread at all
    with pytest.raises(ValueError, match="not paired"):
        effects.difference(a, {0: b[0], 1: b[1], 3: b[2]})


@pytest.mark.parametrize("claim, arm, metric", [("U2", "search_only", "unified_minus_search_only"),
                                                ("U2", "template_only", "unified_minus_template_only"),
                                                ("U3", "ce_dte_ste", "aware_minus_unaware")])
def test_u2_u3_null_and_clear(claim, arm, metric):
    def verdict(v):  # this check's verdict (U2 has one check per isolated arm)
        return next(c["verdict"] for c in v[claim]["checks"] if c["metric"] == f"{claim.lower()}.{metric}")

    # null: the two arms differ by noise alone (seed-level noise too: independent per seed)
    v, m = verdicts_for(arms(ARMS, noise=0.05, seed=1), CLEAR_IN)
    assert verdict(v) in ("inconclusive", "not reproduced")
    assert v[claim]["verdict"] in ("inconclusive", "not reproduced")
    e = m[claim.lower()][metric]
    # every arm tracks the same sequences: crossed seeds x sequences, items counted per seed
    assert e["unit"] == "seeds x items" and e["n"] == 3 and e["n_items"] == SEQS and e["method"].startswith("crossed")
    assert e["ci_items"][0] <= e["value"] <= e["ci_items"][1]
    # the unified/aware arm below the other: not reproduced
    v, _ = verdicts_for(arms({**ARMS, arm: 0.1}, noise=0.02, seed=1), CLEAR_IN)
    assert verdict(v) == "not reproduced" and v[claim]["verdict"] == "not reproduced"
    # clear: the unified/aware arm 0.05 above on every seed
    v, m = verdicts_for(arms({**ARMS, arm: -0.05}, noise=0.02, seed=1), CLEAR_IN)
    assert verdict(v) == "reproduced" and m[claim.lower()][metric]["value"] == pytest.approx(0.05, abs=0.01)
    # U2 as a whole holds only when the unified arm beats both isolated arms
    v, _ = verdicts_for(arms({**ARMS, "search_only": -0.05, "template_only": -0.05}, noise=0.02, seed=1), CLEAR_IN)
    assert v["U2"]["verdict"] == "reproduced"


@pytest.mark.parametrize("claim", ["U1", "U2", "U3"])
def test_a_baseline_no_better_than_a_still_tracker_fails_every_regime(claim):
    clear = {"U1": (ARMS, CLEAR_IN), "U2": ({**ARMS, "search_only": -0.05, "template_only": -0.05}, CLEAR_IN),
             "U3": ({**ARMS, "ce_dte_ste": -0.05}, CLEAR_IN)}[claim]
    aucs = arms(clear[0], noise=0.005 if claim == "U1" else 0.02, seed=1)
    v, _ = verdicts_for(aucs, clear[1], aa=aa_like(aucs, 0.005, 3))
    assert v[claim]["verdict"] == "reproduced", v[claim]["reason"]
    # the same runs, but a tracker that never moves scores as well as the baseline
    v, m = verdicts_for(aucs, clear[1], trivial=0.55, aa=aa_like(aucs, 0.005, 3))
    assert v[claim]["regime"] == "not reached" and v[claim]["verdict"] == "inconclusive"
    assert v[claim]["checks_verdict"] == "reproduced" and "regime not reached" in v[claim]["reason"]


def test_no_pruning_in_the_forward_fails_the_mechanism_regimes():
    aucs = arms({**ARMS, "search_only": -0.05, "template_only": -0.05, "ce_dte_ste": -0.05}, noise=0.02, seed=1)
    v, m = verdicts_for(aucs, [114.0] * 8)  # the pruned arms process every token
    assert m["regime"]["tokens_pruned"]["unified"]["unit"] == "by design"
    assert all(v[c]["regime"] == "not reached" for c in ("U1", "U2", "U3"))


def test_a_failed_seed_aa_control_makes_the_claims_inconclusive():
    aucs = arms({**ARMS, "search_only": -0.05, "template_only": -0.05}, noise=0.02, seed=1)
    v, m = verdicts_for(aucs, CLEAR_IN, aa=aa_like(aucs, 0.005, 3))
    assert m["controls"]["seed_aa"]["passed"] and v["U2"]["verdict"] == "reproduced"
    assert m["controls"]["seed_aa"]["kind"] == "seed A/A" and m["aa_seeds"] == list(AA_SEEDS)
    broken = {s: run_metrics(np.asarray(x["finetuned"]["per_sequence_auc"]) + 0.1, [114.0] * 8)
              for s, x in aa_like(aucs, 0.005, 3).items()}
    v, m = verdicts_for(aucs, CLEAR_IN, aa=broken)
    assert not m["controls"]["seed_aa"]["passed"] and not m["controls"]["seed_aa_ratio"]["passed"]
    assert v["U2"]["verdict"] == "inconclusive" and "seed_aa" in v["U2"]["reason"]


def test_latency_speedups_are_judged_against_the_aa_control():
    lat = effects.latency_effects(stable_latency()["pairs"])["b1"]
    assert lat["control"]["passed"] and lat["control"]["kind"] == "timing A/A"
    e = lat["variants"]["utptrack"]
    assert e["value"] == pytest.approx(2.0, abs=0.05) and e["aa_factor"] >= 1
    assert e["ci"][0] <= e["ci_unwidened"][0] and e["ci"][1] >= e["ci_unwidened"][1]
    shaky = stable_latency()["pairs"]
    shaky["b1"][AA] = {"baseline_s": [1.0, 1.3, 0.8, 1.2], "variant_s": [1.2, 0.9, 1.1, 0.8]}
    lat = effects.latency_effects(shaky)["b1"]
    wide = lat["variants"]["utptrack"]
    assert not lat["control"]["passed"] and wide["aa_factor"] > e["aa_factor"] and wide["ci"][0] < e["ci"][0]
    m = effects.decide(constructed_evals(arms(ARMS, 0.02), NULL_IN), {"pairs": shaky}, ROLES, None,
                       aa_evals(arms(ARMS, 0.02)))
    assert m["controls"]["latency_aa_b1"]["kind"] == "timing A/A"


def test_tables_show_seeds_intervals_regime_and_latency():
    evals = constructed_evals(arms(ARMS, 0.02), NULL_IN)
    m = effects.decide(evals, stable_latency(), ROLES, None, aa_evals(arms(ARMS, 0.02)))
    tables = effects.report_tables(m, evals, {"utptrack": {"ce": 0.7, "dte": 0.6, "ste": 0.6}})
    assert "seeds [0, 1, 2]" in tables and "fine-tuned on seeds [100, 101, 102]" in tables
    assert "| utptrack | training_free | 0.70/0.60/0.60 |" in tables and "| ce_dte_ste | training_free |" not in tables
    assert "block mean 27.1%" in tables and "after the last block 64.0%" in tables
    assert "| 1 | A/A control |" in tables and "| 1 | utptrack | 500.00 |" in tables
    assert "a tracker that never moves" in tables and "| seed_aa | seed A/A |" in tables


def test_bad_params_name_file_and_key():
    params = copy.deepcopy(rc.load_paper("utptrack"))
    params["mini"]["variants"]["search_only"]["ce"]["keep"] = 0.5  # solved, never given
    with pytest.raises(rc.ParamsError, match=r"params/utptrack.yaml: key 'mini.variants.search_only"):
        rc.validate_paper(params, "utptrack")
    params = copy.deepcopy(rc.load_paper("utptrack"))
    params["smoke"]["finetune"]["keep_warmup"]["end"] = 2
    with pytest.raises(rc.ParamsError, match=r"key 'smoke.finetune.keep_warmup.end'"):
        rc.validate_paper(params, "utptrack")


# ---------------------------------------------------------------- stages: determinism and the `paper` path


def test_smoke_training_is_deterministic(tmp_path):
    from repro.papers.utptrack import data, train

    path = tmp_path / "utptrack.yaml"
    path.write_text(yaml.safe_dump(rc.load_paper("utptrack")))
    run_stage("utptrack", data, path, tmp_path / "data", ["data"], profile="smoke")
    a = run_stage("utptrack", train, path, tmp_path / "t1", ["model", "crops", "loss", "train"],
                  [("data", tmp_path / "data")], profile="smoke")
    b = run_stage("utptrack", train, path, tmp_path / "t2", ["model", "crops", "loss", "train"],
                  [("data", tmp_path / "data")], profile="smoke")
    assert a == b and np.isfinite(a["train_loss_last"])


def test_finetuning_applies_the_keep_rate_warmup_and_the_step_drop(tmp_path, monkeypatch):
    """Each training forward prunes at the warm-up's keep ratios of its step (1.0 first, the target
    from a third of the steps on); validation forwards always run at the target; the learning rate
    is constant, then 0.1x from 80% of the steps."""
    from repro.papers.utptrack import _fit, data, finetune, train

    params = copy.deepcopy(rc.load_paper("utptrack"))
    params["smoke"]["finetune"].update(steps=9, batch_size=2, validation={"batches": 1, "every": 4})
    path = tmp_path / "utptrack.yaml"
    path.write_text(yaml.safe_dump(params))
    run_stage("utptrack", data, path, tmp_path / "data", ["data"], profile="smoke")
    run_stage("utptrack", train, path, tmp_path / "train", ["model", "crops", "loss", "train"],
              [("data", tmp_path / "data")], profile="smoke")
    seen, lrs = [], []
    encode = method.OneStreamTracker.encode

    def spy(self, *args):
        fmap, counts, processed = encode(self, *args)
        seen.append((self.training, self.warm, counts[-1]))
        return fmap, counts, processed

    monkeypatch.setattr(method.OneStreamTracker, "encode", spy)
    step = torch.optim.AdamW.step
    monkeypatch.setattr(torch.optim.AdamW, "step", lambda opt, *a, **k: (lrs.append(opt.param_groups[0]["lr"]),
                                                                          step(opt, *a, **k))[1])
    run_stage("utptrack", finetune, path, tmp_path / "ft", ["crops", "variants", "finetune"],
              [("data", tmp_path / "data"), ("model", tmp_path / "train")], [("variant", "utptrack"), ("seed", 0)],
              profile="smoke")
    ft = params["smoke"]["finetune"]
    warm = [method.warmup_weight(s, 9, ft["keep_warmup"]["start"], ft["keep_warmup"]["end"]) for s in range(9)]
    assert warm[0] == 1.0 and 0 < warm[1] < 1 and warm[3:] == [0.0] * 6  # target from step 3 (a third) on
    utp = method.Pruning.from_variant(params["smoke"]["variants"]["utptrack"])
    trains = [(w, c) for training, w, c in seen if training]
    assert [w for w, _ in trains] == warm
    for w, counts in trains:  # the counts after the last block follow the warm-up weight of the step
        expected = (64, 25, 25)
        for block in range(8):
            expected = method.block_counts(utp, block, expected, w)
        assert counts == expected
    assert trains[0][1] == (64, 25, 25) and trains[-1][1] == (23, 6, 6)
    vals = [(w, c) for training, w, c in seen if not training]
    assert len(vals) == 4 and all(w == 0.0 and c == (23, 6, 6) for w, c in vals)  # steps 0, 4, 8, 9
    history = json.loads((tmp_path / "ft" / "history.json").read_text())
    assert history["warm"] == warm and [s for s, _ in history["val"]] == [0, 4, 8, 9]
    assert lrs == pytest.approx([ft["lr"]] * 8 + [ft["lr"] * ft["lr_drop"]["factor"]])  # 0.8 x 9 = 7.2: step 8
    assert _fit.lr_factor(7, ft | {"steps": 9}) == 1.0 and _fit.lr_factor(8, ft | {"steps": 9}) == 0.1


def test_paper_profile_chain_on_local_files(tmp_path):
    """Hub names swapped for a tiny local ViT checkpoint (save_pretrained, 24 blocks as the paper's
    schedule needs) and a local parquet file of frames + boxes (images as PNG, like hub sets) read
    with load_dataset; same stages, the published crop sizes and pruning schedule."""
    import datasets
    from PIL import Image
    from transformers import ViTConfig, ViTModel

    from repro.papers.utptrack import analysis, data, evaluate, finetune, latency, train

    torch.manual_seed(0)
    ViTModel(ViTConfig(hidden_size=16, num_hidden_layers=24, num_attention_heads=2, intermediate_size=32,
                       image_size=224, patch_size=16), add_pooling_layer=False).save_pretrained(tmp_path / "vit")
    spec = video.VideoSpec(frame_size=96, frames=6, target_size=(14.0, 20.0))
    feats = datasets.Features({"video": datasets.Value("int32"), "frame": datasets.Value("int32"),
                               "image": datasets.Image(), "box": datasets.Sequence(datasets.Value("float32"))})
    files = {}
    for i, name in enumerate(("train", "test", "val")):
        rows = video.render_split((7, i), 2, spec).with_format("numpy")[:]
        table = {"video": rows["video"], "frame": rows["frame"],
                 "image": [Image.fromarray(im.astype(np.uint8)) for im in rows["image"]], "box": rows["box"].tolist()}
        files[name] = str(tmp_path / f"{name}.parquet")
        datasets.Dataset.from_dict(table, features=feats).to_parquet(files[name])

    params = copy.deepcopy(rc.load_paper("utptrack"))
    sec = params["paper"]
    sec["data"]["source"].update(load={"path": "parquet", "data_files": files}, val_split="val")
    sec["model"] = {"pretrained": str(tmp_path / "vit"), "head_channels": 8}
    sec["train"].update(steps=1, batch_size=2, warmup=0)
    sec["finetune"].update(steps=2, batch_size=2, validation={"batches": 1, "every": 1})
    sec["crops"]["max_gap"] = 3
    sec["evaluate"]["update_interval"] = 2
    sec["latency"].update(batch_sizes=[1, 2], warmup=0, pairs=2, flush_mb=1)
    sec["seeds"], sec["aa_seeds"] = [0, 1], [100, 101]
    path = tmp_path / "utptrack.yaml"
    path.write_text(yaml.safe_dump(params))

    r = tmp_path / "results"
    d = run_stage("utptrack", data, path, r / "data", ["data"])
    assert d["test"] == {"videos": 2, "frames": 12, "target_size_mean": pytest.approx(d["test"]["target_size_mean"])}
    t = run_stage("utptrack", train, path, r / "train", ["model", "crops", "loss", "train"], [("data", r / "data")])
    cfg = json.loads((r / "train" / "model" / "config.json").read_text())
    assert cfg["vit"]["num_hidden_layers"] == 24 and cfg["search_size"] == 224 and t["steps"] == 1
    runs = [(v, s) for v in sec["variants"] for s in sec["seeds"]] + [("baseline", s) for s in sec["aa_seeds"]]
    for v, s in runs:
        run_stage("utptrack", finetune, path, r / "finetune" / v / f"seed{s}", ["crops", "variants", "finetune"],
                  [("data", r / "data"), ("model", r / "train")], [("variant", v), ("seed", s)])
    for v, s in runs:
        ev = run_stage("utptrack", evaluate, path, r / "evaluate" / v / f"seed{s}", ["crops", "variants", "evaluate"],
                       [("data", r / "data"), ("model", r / "finetune" / v / f"seed{s}"),
                        ("baseline", r / "finetune" / "baseline" / f"seed{s}")], [("variant", v), ("seed", s)])
        assert 0 <= ev["finetuned"]["auc"] <= 1 and len(ev["finetuned"]["per_sequence_auc"]) == 2
        assert ("training_free" in ev) == (v in sec["evaluate"]["training_free"])
        # the still tracker reports frame 0's box everywhere: frame 0 scores IoU 1, so its AUC is above 0
        assert len(ev["trivial"]["per_sequence_auc"]) == 2 and ev["trivial"]["auc"] > 0
    # published schedule on 14 x 14 search / 7 x 7 template tokens: 196 -> 138 -> 97 -> 68, 49 -> 30 -> 18 -> 11,
    # counted in the forward
    utp = json.loads((r / "evaluate" / "utptrack" / "seed1" / "metrics.json").read_text())["metrics"]
    trace = utp["finetuned"]["token_trace"]
    assert trace[21]["in"] == 68 + 18 + 18 and trace[21]["out"] == 68 + 11 + 11
    assert trace[-1] == {"in": 90, "out": 90, "search": 68, "static": 11, "dynamic": 11}
    lat = run_stage("utptrack", latency, path, r / "latency", ["model", "crops", "variants", "latency"])
    assert set(lat["pairs"]["b2"]) == {AA, *sec["variants"]} - {"baseline"}
    assert len(lat["pairs"]["b2"]["utptrack"]["variant_s"]) == 2
    inputs = [(f"{stage}_{v}_seed{s}", r / stage / v / f"seed{s}") for stage in ("evaluate", "finetune")
              for v, s in runs] + [("latency", r / "latency")]
    m = run_stage("utptrack", analysis, path, r / "analysis", ["seeds", "aa_seeds", "variants", "analysis"], inputs)
    assert m["u1"]["relative_auc"]["n"] == 2 and m["u1"]["tokens_pruned_block_mean"]["unit"] == "by design"
    assert m["u2"]["unified_minus_search_only"]["n_items"] == 2
    assert m["u2"]["unified_minus_template_only"]["n_items"] == 2
    assert m["controls"]["seed_aa"]["effect"]["n"] == 2 and set(m["controls"]) >= {"latency_aa_b1", "latency_aa_b2"}
    assert m["regime"]["baseline_minus_trivial"]["n_items"] == 2
    assert m["validation"]["utptrack"]["steps"] == [0, 1, 2]
    assert (r / "analysis" / "tradeoff.png").stat().st_size > 1000
    assert "A/A control" in (r / "analysis" / "tables.md").read_text()
