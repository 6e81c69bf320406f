"""``VcrForMultipleChoice``: scores (image regions, query, response) for each choice.

Visual side: the referenced boxes are pooled from a transformers vision backbone's
feature map with RoIAlign (or read as precomputed region features) and projected to the
text width together with their box geometry. Each token that names an object gets that
object's feature added to its embedding (r2c-style grounding), the text encoder runs on
every (query, response) pair, and cross-attention layers let the tokens attend to all
objects. The first token's fused state is ``pooled_output`` and a linear scorer gives
one logit per choice.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from transformers import AutoConfig, AutoModel, AutoModelForMultipleChoice, PreTrainedModel
from transformers.utils import ModelOutput

from .configuration_vcr import VcrConfig
from .roi_align import roi_align
from .submodules import build_submodel


@dataclass
class VcrMultipleChoiceOutput(ModelOutput):
    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    pooled_output: torch.Tensor | None = None
    attentions: tuple[torch.Tensor, ...] | None = None


class VcrPreTrainedModel(PreTrainedModel):
    config_class = VcrConfig
    base_model_prefix = "vcr"
    supports_gradient_checkpointing = True
    main_input_name = "input_ids"

    def _init_weights(self, module):
        if isinstance(module, nn.Linear) and getattr(module, "_hf_vcr_head", False):
            nn.init.normal_(module.weight, std=0.02)
            nn.init.zeros_(module.bias)


class FusionLayer(nn.Module):
    """Tokens attend to the objects; each token is updated from ``[h; a; h * a]`` (its state, the
    attended object summary and their product, as r2c's reasoning input), then a feed-forward."""

    def __init__(self, hidden: int, heads: int, dropout: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(hidden)
        self.attn = nn.MultiheadAttention(hidden, heads, dropout=dropout, batch_first=True)
        self.combine = nn.Linear(3 * hidden, hidden)
        self.norm2 = nn.LayerNorm(hidden)
        self.ffn = nn.Sequential(nn.Linear(hidden, 2 * hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(2 * hidden, hidden))

    def forward(self, tokens: torch.Tensor, objects: torch.Tensor, object_pad: torch.Tensor) -> torch.Tensor:
        h = self.norm1(tokens)
        attended, _ = self.attn(h, objects, objects, key_padding_mask=object_pad, need_weights=False)
        tokens = tokens + self.combine(torch.cat([h, attended, h * attended], dim=-1))
        return tokens + self.ffn(self.norm2(tokens))


class VcrModel(VcrPreTrainedModel):
    def __init__(self, config: VcrConfig):
        super().__init__(config)
        hidden = config.hidden_size
        attn_impl = getattr(config.text_config, "_attn_implementation", None) or "eager"
        self.text_encoder = build_submodel(config.text_config, attn_impl)
        if config.visual_source == "backbone":
            self.vision_backbone = build_submodel(config.vision_config)
            channels = _backbone_channels(config.vision_config)
            self.region_proj = nn.Linear(channels * config.roi_output_size**2, hidden)
        elif config.visual_source == "features":
            self.region_proj = nn.Linear(config.region_feature_dim, hidden)
        if config.visual_source != "none":
            self.box_proj = nn.Linear(5, hidden)
            self.object_norm = nn.LayerNorm(hidden)
            self.fusion = nn.ModuleList(
                FusionLayer(hidden, config.num_fusion_heads, config.fusion_dropout) for _ in range(config.num_fusion_layers)
            )
        self.gradient_checkpointing = False
        self.post_init()

    def train(self, mode: bool = True):
        super().train(mode)
        if mode and self.config.visual_source == "backbone" and self.config.freeze_backbone_batchnorm:
            for module in self.vision_backbone.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()
        return self

    # -- visual side -----------------------------------------------------------------
    def _feature_map(self, pixel_values: torch.Tensor) -> torch.Tensor:
        kwargs = {}
        if getattr(self.vision_backbone.config, "model_type", None) == "vit":
            # a ViT at another image size than its pretraining one: interpolate its position embeddings
            kwargs["interpolate_pos_encoding"] = tuple(pixel_values.shape[-2:]) != (self.vision_backbone.config.image_size,) * 2
        out = self.vision_backbone(pixel_values=pixel_values, **kwargs)
        fmap = out.last_hidden_state
        if fmap.dim() == 3:  # ViT: [B, 1 + h*w, D] -> [B, D, h, w]
            tokens = fmap[:, 1:]
            side = int(round(tokens.shape[1] ** 0.5))
            fmap = tokens.transpose(1, 2).reshape(tokens.shape[0], -1, side, side)
        return fmap

    def encode_objects(self, boxes, box_mask, pixel_values=None, region_features=None) -> torch.Tensor:
        """Object features ``[B, N, H]`` from pixels (RoIAlign) or precomputed region features."""
        cfg = self.config
        if cfg.visual_source == "backbone":
            if pixel_values is None:
                raise ValueError("this VcrConfig uses visual_source='backbone': pass pixel_values")
            fmap = self._feature_map(pixel_values)
            scale = fmap.shape[-1] / pixel_values.shape[-1]
            pooled = roi_align(fmap, boxes, cfg.roi_output_size, scale)  # [B, N, C, r, r]
            feats = self.region_proj(pooled.flatten(2))
            h, w = pixel_values.shape[-2:]
        else:
            if region_features is None:
                raise ValueError("this VcrConfig uses visual_source='features': pass region_features [B, N, D]")
            feats = self.region_proj(region_features)
            h, w = cfg.image_size
        norm = boxes.new_tensor([w, h, w, h])
        b = boxes / norm
        area = ((b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])).unsqueeze(-1)
        feats = self.object_norm(feats + self.box_proj(torch.cat([b, area], dim=-1)))
        return feats * box_mask.unsqueeze(-1).to(feats.dtype)

    def get_input_embeddings(self) -> nn.Module:
        return self.text_encoder.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.text_encoder.set_input_embeddings(value)

    # -- forward ---------------------------------------------------------------------
    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        object_ids: torch.Tensor | None = None,
        boxes: torch.Tensor | None = None,
        box_mask: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        region_features: torch.Tensor | None = None,
        output_attentions: bool = False,
    ) -> tuple[torch.Tensor, tuple | None]:
        """Returns ``(pooled [B, C, H], text attentions or None)`` for inputs ``[B, C, L]``."""
        B, C, L = input_ids.shape
        flat = lambda t: None if t is None else t.reshape(B * C, *t.shape[2:])  # noqa: E731
        embeds = self.text_encoder.get_input_embeddings()(flat(input_ids))
        objects = None
        if self.config.visual_source != "none":
            objects = self.encode_objects(boxes, box_mask, pixel_values, region_features)  # [B, N, H]
            if object_ids is not None:
                ids = object_ids.reshape(B, C * L)
                picked = torch.gather(objects, 1, ids.clamp(min=0).unsqueeze(-1).expand(-1, -1, objects.shape[-1]))
                picked = picked * (ids >= 0).unsqueeze(-1).to(picked.dtype)
                embeds = embeds + picked.reshape(B * C, L, -1)
        out = self.text_encoder(
            inputs_embeds=embeds,
            attention_mask=flat(attention_mask),
            token_type_ids=flat(token_type_ids),
            output_attentions=output_attentions,
        )
        tokens = out.last_hidden_state
        if objects is not None:
            obj = objects.repeat_interleave(C, dim=0)
            pad = ~box_mask.bool().repeat_interleave(C, dim=0)
            # an item with no objects would make attention NaN: let it attend to its (zero) first slot
            pad[:, 0] &= ~pad.all(dim=1)
            for layer in self.fusion:
                if self.gradient_checkpointing and self.training:
                    tokens = torch.utils.checkpoint.checkpoint(layer, tokens, obj, pad, use_reentrant=False)
                else:
                    tokens = layer(tokens, obj, pad)
        if self.config.pooling == "max":
            mask = flat(attention_mask) if attention_mask is not None else torch.ones(tokens.shape[:2], device=tokens.device)
            pooled = tokens.masked_fill(~mask.bool().unsqueeze(-1), torch.finfo(tokens.dtype).min).amax(dim=1)
            pooled = torch.where(mask.any(dim=1, keepdim=True), pooled, torch.zeros_like(pooled))
        else:
            pooled = tokens[:, 0]
        return pooled.reshape(B, C, -1), out.attentions if output_attentions else None


class VcrForMultipleChoice(VcrPreTrainedModel):
    def __init__(self, config: VcrConfig):
        super().__init__(config)
        self.vcr = VcrModel(config)
        self.dropout = nn.Dropout(config.classifier_dropout)
        self.classifier = nn.Linear(config.hidden_size, 1)
        self.classifier._hf_vcr_head = True
        self.post_init()

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        object_ids: torch.Tensor | None = None,
        boxes: torch.Tensor | None = None,
        box_mask: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        region_features: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_attentions: bool = False,
        return_dict: bool | None = None,
        **kwargs,
    ) -> VcrMultipleChoiceOutput:
        pooled, attentions = self.vcr(
            input_ids, attention_mask, token_type_ids, object_ids, boxes, box_mask, pixel_values, region_features, output_attentions
        )
        logits = self.classifier(self.dropout(pooled)).squeeze(-1)  # [B, C]
        if attention_mask is not None:
            # choices that are all padding (e.g. a batch mixing 4- and 16-way items) never win
            logits = logits.masked_fill(attention_mask.sum(-1) == 0, torch.finfo(logits.dtype).min)
        loss = F.cross_entropy(logits, labels, ignore_index=-100) if labels is not None else None
        return VcrMultipleChoiceOutput(loss=loss, logits=logits, pooled_output=pooled, attentions=attentions)

    def load_text_encoder(self, name_or_path: str, **kwargs) -> None:
        """Initialise the text encoder from a pretrained checkpoint (Hub name or local directory)."""
        pretrained = AutoModel.from_pretrained(name_or_path, **kwargs)
        missing, unexpected = self.vcr.text_encoder.load_state_dict(pretrained.state_dict(), strict=False)
        if unexpected:
            raise ValueError(f"{name_or_path}: weights do not fit the text encoder (unexpected keys {unexpected[:5]})")

    def load_vision_backbone(self, name_or_path: str, **kwargs) -> None:
        """Initialise the vision backbone from a pretrained checkpoint (Hub name or local directory)."""
        pretrained = AutoModel.from_pretrained(name_or_path, **kwargs)
        ours, theirs = self.vcr.vision_backbone.state_dict(), pretrained.state_dict()
        missing, unexpected = sorted(set(ours) - set(theirs)), sorted(set(theirs) - set(ours))
        wrong = [f"{k}: {tuple(theirs[k].shape)} vs {tuple(v.shape)}" for k, v in ours.items() if k in theirs and theirs[k].shape != v.shape]
        if missing or unexpected or wrong:
            # a silent partial load would train a randomly initialised backbone under a pretrained name
            raise ValueError(
                f"{name_or_path}: weights do not fit this model's vision backbone ({type(self.vcr.vision_backbone).__name__}; "
                f"missing {missing[:3]}, unexpected {unexpected[:3]}, shape mismatch {wrong[:3]}): build the config with "
                "vision_config=AutoConfig.from_pretrained(name_or_path)"
            )
        self.vcr.vision_backbone.load_state_dict(theirs)


def _backbone_channels(vision_config) -> int:
    if hasattr(vision_config, "hidden_sizes"):
        return vision_config.hidden_sizes[-1]
    return vision_config.hidden_size


AutoConfig.register(VcrConfig.model_type, VcrConfig)
AutoModel.register(VcrConfig, VcrForMultipleChoice)
AutoModelForMultipleChoice.register(VcrConfig, VcrForMultipleChoice)
