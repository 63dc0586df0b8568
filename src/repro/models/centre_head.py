"""A CenterNet-style centre head for single-object trackers: box conventions, the training target
and losses (focal on a Gaussian heatmap, GIoU), and decoding the box at the response peak."""
from __future__ import annotations

import math

import torch
from torch import nn


def xywh_to_cxcywh(boxes: torch.Tensor, size: int) -> torch.Tensor:
    """Crop-pixel (x, y, w, h) -> normalised (cx, cy, w, h)."""
    x, y, w, h = boxes.unbind(-1)
    return torch.stack([x + w / 2, y + h / 2, w, h], -1) / size


def cxcywh_to_xyxy(b: torch.Tensor) -> torch.Tensor:
    cx, cy, w, h = b.unbind(-1)
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1)


def giou(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(GIoU, IoU) of xyxy boxes [N, 4]."""
    area = lambda z: (z[:, 2] - z[:, 0]).clamp(min=0) * (z[:, 3] - z[:, 1]).clamp(min=0)  # noqa: E731
    lt, rb = torch.maximum(a[:, :2], b[:, :2]), torch.minimum(a[:, 2:], b[:, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    union = area(a) + area(b) - inter
    iou = inter / union.clamp(min=1e-9)
    hull = (torch.maximum(a[:, 2:], b[:, 2:]) - torch.minimum(a[:, :2], b[:, :2])).clamp(min=0).prod(-1)
    return iou - (hull - union) / hull.clamp(min=1e-9), iou


def centre_cells(target: torch.Tensor, g: int) -> torch.Tensor:
    """(row, col) cell of each normalised target centre: [B, 2] long."""
    return (target[:, [1, 0]] * g).floor().long().clamp(0, g - 1)


def gaussian_heatmap(target: torch.Tensor, g: int) -> torch.Tensor:
    """CenterNet-style target: a Gaussian around the centre cell (exactly 1 there), sigma a sixth of
    the box diameter in cells (at least 0.5)."""
    cell = centre_cells(target, g).float()
    sigma = (target[:, 2:] * g).clamp(min=1e-3).norm(dim=1).div(6).clamp(min=0.5)
    ar = torch.arange(g, dtype=target.dtype)
    d2 = (ar[None, :, None] - cell[:, 0, None, None]) ** 2 + (ar[None, None, :] - cell[:, 1, None, None]) ** 2
    return torch.exp(-d2 / (2 * sigma[:, None, None] ** 2))


def focal_loss(logits: torch.Tensor, heat: torch.Tensor, alpha: float = 2.0, beta: float = 4.0) -> torch.Tensor:
    """CenterNet's penalty-reduced focal loss, normalised by the number of positive cells."""
    p = torch.sigmoid(logits).clamp(1e-4, 1 - 1e-4)
    pos = heat.eq(1).float()
    pos_loss = -(torch.log(p) * (1 - p) ** alpha * pos).sum()
    neg_loss = -(torch.log(1 - p) * p**alpha * (1 - heat) ** beta * (1 - pos)).sum()
    return (pos_loss + neg_loss) / pos.sum().clamp(min=1)


def hann_window(g: int) -> torch.Tensor:
    """Centred 2-D Hann window used as the motion prior on the response map at test time."""
    w = 0.5 * (1 - torch.cos(2 * math.pi * torch.arange(1, g + 1) / (g + 1)))
    return w[:, None] * w[None, :]


class CentreHead(nn.Module):
    """Two 3x3 convs on the search map, then 1x1 to (score logit, size w h, offset x y)."""

    def __init__(self, dim: int, channels: int):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(dim, channels, 3, padding=1), nn.ReLU(),
                                  nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(),
                                  nn.Conv2d(channels, 5, 1))

    def forward(self, fmap: torch.Tensor):
        out = self.body(fmap)
        return out[:, 0], torch.sigmoid(out[:, 1:3]), torch.sigmoid(out[:, 3:5])


def box_at(size: torch.Tensor, offset: torch.Tensor, cells: torch.Tensor) -> torch.Tensor:
    """Normalised (cx, cy, w, h) read at cells [B, 2] (row, col) of the size/offset maps."""
    g = size.shape[-1]
    b = torch.arange(size.shape[0])
    r, c = cells[:, 0], cells[:, 1]
    off, wh = offset[b, :, r, c], size[b, :, r, c]
    return torch.stack([(c + off[:, 0]) / g, (r + off[:, 1]) / g, wh[:, 0], wh[:, 1]], -1)


def decode(score: torch.Tensor, size: torch.Tensor, offset: torch.Tensor, window: torch.Tensor | None):
    """Box at the peak of the (windowed) response and that peak as confidence."""
    response = torch.sigmoid(score) * (window if window is not None else 1.0)
    B, g, _ = response.shape
    conf, flat = response.view(B, -1).max(1)
    cells = torch.stack([flat // g, flat % g], -1)
    return box_at(size, offset, cells), conf
