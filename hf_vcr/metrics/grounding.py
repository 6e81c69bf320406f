"""Visual grounding of a VQA model: a Grad-CAM heatmap over image regions, its Spearman rank
correlation with a human attention map (VQA-HAT style), and a PNG overlay.

SOrT (Dharur et al., 2021, section 4.2) ranks the pixels of the model's Grad-CAM heatmap and of
the human attention map and reports the Spearman rank correlation of the two lists. With region
features the "last convolutional layer" is the set of regions: a region's importance is
``ReLU(Σ_d ∂y_c/∂v_kd · v_kd)``, spread over its box to make a pixel heatmap.
"""

from __future__ import annotations

import os

import numpy as np
import torch

from ..utils.checkpoints import atomic_path

__all__ = [
    "region_gradcam",
    "regions_to_heatmap",
    "resize_map",
    "spearman_rank_correlation",
    "grounding_spearman",
    "heatmap_overlay",
    "save_heatmap_overlay",
]


def region_gradcam(model, inputs: dict, target_class: torch.Tensor | None = None) -> torch.Tensor:
    """Per-question region importances ``[Q, K]``: ``ReLU(Σ_d ∂y_c/∂v_kd · v_kd)``.

    ``inputs`` are the model's keyword inputs; ``target_class`` ``[Q]`` defaults to the predicted class.
    """
    was_training = model.training
    model.eval()
    inputs = dict(inputs)
    if inputs.get("image_features") is not None:  # precomputed features: make them a graph node
        inputs["image_features"] = inputs["image_features"].detach().requires_grad_(True)
    with torch.enable_grad():
        out = model(**inputs)
        regions = out.region_features
        c = out.logits.argmax(-1) if target_class is None else target_class
        scores = out.logits.gather(-1, c.view(-1, 1)).sum()
        (grad,) = torch.autograd.grad(scores, regions)
    model.train(was_training)
    cam = torch.relu((grad * regions).sum(-1)).detach()
    if "image_mask" in inputs and inputs["image_mask"] is not None:
        mask = inputs["image_mask"]
        if "question_image_index" in inputs and inputs["question_image_index"] is not None:
            mask = mask.index_select(0, inputs["question_image_index"])
        cam = cam * mask.to(cam.dtype)
    return cam


def regions_to_heatmap(weights, boxes, height: int, width: int) -> np.ndarray:
    """Spread region weights ``[K]`` over their boxes ``[K, 4]`` (x1, y1, x2, y2 pixels): an ``[H, W]`` map in [0, 1]."""
    w = np.asarray(weights, dtype=np.float64).reshape(-1)
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if len(w) != len(b):
        raise ValueError(f"{len(w)} region weights but {len(b)} boxes")
    heat = np.zeros((height, width), dtype=np.float64)
    for wk, (x1, y1, x2, y2) in zip(w, b):
        x1, x2 = int(np.clip(np.floor(x1), 0, width)), int(np.clip(np.ceil(x2), 0, width))
        y1, y2 = int(np.clip(np.floor(y1), 0, height)), int(np.clip(np.ceil(y2), 0, height))
        heat[y1:y2, x1:x2] += wk
    peak = heat.max()
    return heat / peak if peak > 0 else heat


def resize_map(array, height: int, width: int) -> np.ndarray:
    """Bilinear resize of a 2-D map with PIL (float32 mode)."""
    from PIL import Image

    a = np.asarray(array, dtype=np.float32)
    if a.ndim == 3:
        a = a.mean(-1)
    if a.shape == (height, width):
        return a.astype(np.float64)
    return np.asarray(Image.fromarray(a, mode="F").resize((width, height), Image.BILINEAR), dtype=np.float64)


def _rankdata(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n with ties given their average rank."""
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    # a group of c tied values ending at sorted position e (1-based) holds ranks e-c+1 .. e: mean e - (c-1)/2
    return (np.cumsum(counts) - (counts - 1) / 2.0)[inverse.reshape(-1)]


def spearman_rank_correlation(a, b) -> float:
    """Spearman's ρ of two equally sized arrays (flattened; ties get average ranks)."""
    x, y = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    if x.shape != y.shape:
        raise ValueError(f"maps of different sizes: {x.shape} vs {y.shape}")
    rx, ry = _rankdata(x), _rankdata(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    denom = np.sqrt((rx * rx).sum() * (ry * ry).sum())
    return float((rx * ry).sum() / denom) if denom > 0 else 0.0


def grounding_spearman(heatmap, human_map, size: int | None = 14) -> float:
    """Rank correlation of a model heatmap and a human attention map, both resized to ``size``×``size``
    (VQA-HAT maps come at their own resolution; ``size=None`` resizes the human map to the heatmap)."""
    heatmap = np.asarray(heatmap, dtype=np.float64)
    if size is None:
        h, w = heatmap.shape
        return spearman_rank_correlation(heatmap, resize_map(human_map, h, w))
    return spearman_rank_correlation(resize_map(heatmap, size, size), resize_map(human_map, size, size))


def _jet(x: np.ndarray) -> np.ndarray:
    """A jet-like colormap: [H, W] in [0, 1] -> [H, W, 3] uint8."""
    x = np.clip(x, 0.0, 1.0)
    r = np.clip(1.5 - np.abs(4 * x - 3), 0, 1)
    g = np.clip(1.5 - np.abs(4 * x - 2), 0, 1)
    b = np.clip(1.5 - np.abs(4 * x - 1), 0, 1)
    return (np.stack([r, g, b], -1) * 255).astype(np.uint8)


def heatmap_overlay(image, heatmap, alpha: float = 0.5):
    """A PIL image: ``image`` (PIL, path or ``[H, W, 3]`` array) blended with the coloured heatmap."""
    from PIL import Image

    if isinstance(image, (str, os.PathLike)):
        image = Image.open(image)
    elif isinstance(image, np.ndarray):
        image = Image.fromarray(image.astype(np.uint8))
    image = image.convert("RGB")
    heat = resize_map(heatmap, image.height, image.width)
    peak = heat.max()
    heat = heat / peak if peak > 0 else heat
    return Image.blend(image, Image.fromarray(_jet(heat)), alpha)


def save_heatmap_overlay(image, heatmap, path: str, alpha: float = 0.5) -> str:
    """Write the overlay as a PNG (atomically) and return its path."""
    overlay = heatmap_overlay(image, heatmap, alpha)
    with atomic_path(path) as tmp:
        overlay.save(tmp, format="PNG")
    return path
