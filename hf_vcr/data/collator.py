"""Batching tokenized VCR views: pads choices and tokens, loads images, scales boxes."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image

from .vcr_format import resolve_under


def load_image(path: str, size: Sequence[int], mean: Sequence[float], std: Sequence[float]) -> tuple[torch.Tensor, tuple[int, int]]:
    """RGB image resized to ``size`` (h, w) and normalised; also returns the original (w, h)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"image file not found: {path}")
    with Image.open(path) as im:
        orig = im.size
        im = im.convert("RGB").resize((size[1], size[0]), Image.BILINEAR)
        arr = np.asarray(im, dtype=np.float32) / 255.0
    arr = (arr - np.asarray(mean, dtype=np.float32)) / np.asarray(std, dtype=np.float32)
    return torch.from_numpy(arr).permute(2, 0, 1), orig


@dataclass
class VcrCollator:
    """Collate examples from :func:`hf_vcr.data.vcr.tokenize_view`.

    ``visual_source`` is ``"backbone"`` (load ``image_path``, resize to ``image_size``),
    ``"features"`` (read ``<region_features_dir>/<img_fn without extension>.npy``, one row per
    object) or ``"none"``.
    """

    pad_token_id: int = 0
    visual_source: str = "backbone"
    image_size: Sequence[int] = (224, 224)
    image_mean: Sequence[float] = (0.485, 0.456, 0.406)
    image_std: Sequence[float] = (0.229, 0.224, 0.225)
    max_objects: int = 32
    region_features_dir: str | None = None

    @classmethod
    def for_model(cls, config, pad_token_id: int, **kwargs) -> "VcrCollator":
        return cls(
            pad_token_id=pad_token_id,
            visual_source=config.visual_source,
            image_size=config.image_size,
            image_mean=config.image_mean,
            image_std=config.image_std,
            max_objects=config.max_objects,
            **kwargs,
        )

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        B = len(examples)
        C = max(len(e["input_ids"]) for e in examples)
        L = max(len(seq) for e in examples for seq in e["input_ids"])
        input_ids = torch.full((B, C, L), self.pad_token_id, dtype=torch.long)
        token_type_ids = torch.zeros((B, C, L), dtype=torch.long)
        attention_mask = torch.zeros((B, C, L), dtype=torch.long)
        object_ids = torch.full((B, C, L), -1, dtype=torch.long)
        for i, e in enumerate(examples):
            for c, seq in enumerate(e["input_ids"]):
                n = len(seq)
                input_ids[i, c, :n] = torch.tensor(seq)
                token_type_ids[i, c, :n] = torch.tensor(e["token_type_ids"][c])
                attention_mask[i, c, :n] = 1
                if "object_ids" in e:
                    object_ids[i, c, :n] = torch.tensor(e["object_ids"][c])
        batch = {
            "input_ids": input_ids,
            "token_type_ids": token_type_ids,
            "attention_mask": attention_mask,
            "labels": torch.tensor([e.get("labels", -100) for e in examples], dtype=torch.long),
        }
        if self.visual_source == "none":
            return batch
        N = max(1, min(self.max_objects, max(len(e["boxes"]) for e in examples)))
        object_ids[object_ids >= N] = -1
        boxes = torch.zeros((B, N, 4))
        box_mask = torch.zeros((B, N))
        pixels, features = [], []
        for i, e in enumerate(examples):
            b = torch.tensor([row[:4] for row in e["boxes"][:N]], dtype=torch.float32).reshape(-1, 4)
            if self.visual_source == "backbone":
                image, (w, h) = load_image(e["image_path"], self.image_size, self.image_mean, self.image_std)
                pixels.append(image)
                b = b * torch.tensor([self.image_size[1] / w, self.image_size[0] / h] * 2)
            else:
                features.append(self._region_features(e, N))
            boxes[i, : len(b)] = b
            box_mask[i, : len(b)] = 1
        batch.update(object_ids=object_ids, boxes=boxes, box_mask=box_mask)
        if pixels:
            batch["pixel_values"] = torch.stack(pixels)
        if features:
            batch["region_features"] = torch.stack(features)
            # features index boxes in the original image: scale to the configured size
            sizes = torch.tensor([[self.image_size[1] / e["width"], self.image_size[0] / e["height"]] * 2 for e in examples])
            batch["boxes"] = boxes * sizes[:, None, :]
        return batch

    def _region_features(self, example: dict, n: int) -> torch.Tensor:
        if self.region_features_dir is None:
            raise ValueError("visual_source='features' needs region_features_dir")
        # img_fn comes from the annotation file: a path escaping the feature folder is an error, never read
        where = f"region features of {example.get('annot_id')}"
        path = resolve_under(self.region_features_dir, os.path.splitext(example["img_fn"])[0] + ".npy", "img_fn", where)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"region features not found for {example.get('annot_id')}: {path}")
        feats = torch.from_numpy(np.load(path)).float()
        if feats.shape[0] < min(n, len(example["boxes"])):
            raise ValueError(f"{path}: {feats.shape[0]} feature rows for {len(example['boxes'])} boxes")
        out = torch.zeros((n, feats.shape[1]))
        k = min(n, feats.shape[0])
        out[:k] = feats[:k]
        return out
