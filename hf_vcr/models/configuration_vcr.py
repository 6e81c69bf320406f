"""Configuration of :class:`~hf_vcr.models.modeling_vcr.VcrForMultipleChoice`."""

from __future__ import annotations

from typing import Any

from transformers import AutoConfig, PretrainedConfig


def _as_config(value: Any, default: dict | None) -> PretrainedConfig | None:
    if value is None:
        value = default
    if value is None or isinstance(value, PretrainedConfig):
        return value
    value = dict(value)
    model_type = value.pop("model_type")
    return AutoConfig.for_model(model_type, **value)


class VcrConfig(PretrainedConfig):
    """A multiple-choice scorer of (image regions, query, response).

    Args:
        text_config: any transformers encoder configuration (dict or config; BERT by default).
        vision_config: a transformers vision backbone configuration (ResNet or ViT) used when
            ``visual_source="backbone"``; its feature map is pooled per box by RoIAlign.
        visual_source: ``"backbone"`` (pixels through ``vision_config``), ``"features"``
            (precomputed region features of size ``region_feature_dim``) or ``"none"`` (text only).
        roi_output_size: RoIAlign output grid per box.
        image_size: ``(height, width)`` images are resized to before the backbone.
        max_objects: objects beyond this index are dropped.
        num_fusion_layers / num_fusion_heads: cross-attention layers in which the tokens of each
            choice attend to the objects.
        freeze_backbone_batchnorm: keep the backbone's BatchNorm layers in eval mode (frozen
            statistics, as r2c and detection backbones do): small per-device batches of images
            then give the same result as one large batch, on one device or many.
        pooling: ``"max"`` (max over the fused token states, as r2c pools its reasoning states)
            or ``"cls"`` (the first token) for ``pooled_output``.
    """

    model_type = "hf_vcr_vcr"

    def __init__(
        self,
        text_config: dict | PretrainedConfig | None = None,
        vision_config: dict | PretrainedConfig | None = None,
        visual_source: str = "backbone",
        region_feature_dim: int = 2048,
        roi_output_size: int = 2,
        image_size: tuple[int, int] | list[int] = (224, 224),
        image_mean: tuple[float, ...] | list[float] = (0.485, 0.456, 0.406),
        image_std: tuple[float, ...] | list[float] = (0.229, 0.224, 0.225),
        max_objects: int = 32,
        num_fusion_layers: int = 1,
        num_fusion_heads: int = 4,
        fusion_dropout: float = 0.1,
        classifier_dropout: float = 0.1,
        freeze_backbone_batchnorm: bool = True,
        pooling: str = "max",
        **kwargs,
    ):
        if visual_source not in ("backbone", "features", "none"):
            raise ValueError(f"visual_source must be 'backbone', 'features' or 'none', got {visual_source!r}")
        self.text_config = _as_config(text_config, {"model_type": "bert"})
        self.vision_config = _as_config(vision_config, {"model_type": "resnet"} if visual_source == "backbone" else None)
        self.visual_source = visual_source
        self.region_feature_dim = region_feature_dim
        self.roi_output_size = roi_output_size
        self.image_size = list(image_size)
        self.image_mean = list(image_mean)
        self.image_std = list(image_std)
        self.max_objects = max_objects
        self.num_fusion_layers = num_fusion_layers
        self.num_fusion_heads = num_fusion_heads
        self.fusion_dropout = fusion_dropout
        self.classifier_dropout = classifier_dropout
        self.freeze_backbone_batchnorm = freeze_backbone_batchnorm
        if pooling not in ("max", "cls"):
            raise ValueError(f"pooling must be 'max' or 'cls', got {pooling!r}")
        self.pooling = pooling
        super().__init__(**kwargs)

    @property
    def hidden_size(self) -> int:
        return self.text_config.hidden_size

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        for key in ("text_config", "vision_config"):
            value = getattr(self, key)
            out[key] = value.to_dict() if isinstance(value, PretrainedConfig) else value
        return out

    def set_dropout(self, p: float) -> None:
        """Set every dropout probability (text encoder, fusion, classifier) to ``p``."""
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob", "dropout", "attention_dropout"):
            if hasattr(self.text_config, name):
                setattr(self.text_config, name, p)
        self.fusion_dropout = p
        self.classifier_dropout = p

    @classmethod
    def tiny(cls, vocab_size: int = 128, visual_source: str = "backbone", **kwargs) -> "VcrConfig":
        """A configuration small enough for tests and the embedded data on a CPU."""
        text = {
            "model_type": "bert",
            "vocab_size": vocab_size,
            "hidden_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "intermediate_size": 128,
            "max_position_embeddings": 128,
            "attn_implementation": "eager",
        }
        vision = {
            "model_type": "resnet",
            "num_channels": 3,
            "embedding_size": 16,
            "hidden_sizes": [32, 64],
            "depths": [1, 1],
            "layer_type": "basic",
            "downsample_in_first_stage": False,
        }
        defaults = dict(
            text_config=text,
            vision_config=vision if visual_source == "backbone" else None,
            visual_source=visual_source,
            region_feature_dim=32,
            image_size=(64, 64),
            max_objects=8,
            num_fusion_heads=4,
        )
        defaults.update(kwargs)
        return cls(**defaults)
