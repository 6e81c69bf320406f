"""RoIAlign (He et al., Mask R-CNN, 2017) in plain torch, batched with ``grid_sample``.

torchvision's op is unavailable with the CPU torch build used here; this version samples
``sampling_ratio x sampling_ratio`` bilinear points per output bin and averages them,
matching ``torchvision.ops.roi_align(aligned=True)`` for a fixed sampling ratio.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def roi_align(features: torch.Tensor, boxes: torch.Tensor, output_size: int, spatial_scale: float, sampling_ratio: int = 2) -> torch.Tensor:
    """Pool ``features`` ``[B, C, h, w]`` inside ``boxes`` ``[B, N, 4]`` (x1, y1, x2, y2, image pixels).

    Returns ``[B, N, C, output_size, output_size]``.
    """
    B, C, h, w = features.shape
    N = boxes.shape[1]
    r, s = output_size, sampling_ratio
    b = boxes.to(features.dtype) * spatial_scale - 0.5  # aligned=True: pixel centres
    x1, y1, x2, y2 = b.unbind(-1)
    bin_w = (x2 - x1).clamp(min=1e-6) / r
    bin_h = (y2 - y1).clamp(min=1e-6) / r
    # sample offsets inside the box, in units of bins: (i + (k + 0.5) / s) for bin i, sample k
    steps = (torch.arange(r, device=features.device, dtype=features.dtype)[:, None]
             + (torch.arange(s, device=features.device, dtype=features.dtype)[None, :] + 0.5) / s).reshape(-1)  # [r*s]
    xs = x1[..., None] + steps * bin_w[..., None]  # [B, N, r*s]
    ys = y1[..., None] + steps * bin_h[..., None]
    # grid_sample with align_corners=True maps -1..1 onto pixel centres 0..w-1
    gx = xs / max(w - 1, 1) * 2 - 1
    gy = ys / max(h - 1, 1) * 2 - 1
    grid = torch.stack(torch.broadcast_tensors(gx[:, :, None, :], gy[:, :, :, None]), dim=-1)  # [B, N, r*s, r*s, 2]
    grid = grid.reshape(B, N * r * s, r * s, 2)
    sampled = F.grid_sample(features, grid, mode="bilinear", padding_mode="zeros", align_corners=True)  # [B, C, N*r*s, r*s]
    sampled = sampled.reshape(B, C, N, r, s, r, s).mean(dim=(4, 6))
    return sampled.permute(0, 2, 1, 3, 4)
