"""Thin adapters that let transformers' multiple-choice models consume hf_vcr batches.

:class:`VisualBertForVcr` is ``VisualBertForMultipleChoice`` (same weights, same
checkpoints: a VCR-finetuned VisualBERT from the Hub loads into it) whose forward takes
the batches of :class:`~hf_vcr.data.collator.VcrCollator` and returns, like
``VcrForMultipleChoice``, ``logits [B, C]`` and the fused ``pooled_output [B, C, H]``.

Visual embeddings are built per object from its box geometry (normalised box and area)
and, when available, its region features (``visual_source="features"``) or a small
RoIAlign descriptor of the raw pixels (``visual_source="backbone"``; VisualBERT itself has
no vision backbone). Tokens naming an object are linked to it through VisualBERT's
``image_text_alignment`` (the object's visual position embedding is the mean position
embedding of the tokens that mention it).
"""

from __future__ import annotations

import torch
from transformers import VisualBertConfig, VisualBertForMultipleChoice

from .modeling_vcr import VcrMultipleChoiceOutput
from .roi_align import roi_align

BOX_DIM = 5
MAX_ALIGNMENT = 8


def visualbert_vcr_config(
    vocab_size: int = 128,
    visual_source: str = "backbone",
    region_feature_dim: int = 32,
    roi_output_size: int = 2,
    image_size: tuple[int, int] = (64, 64),
    max_objects: int = 8,
    **kwargs,
) -> VisualBertConfig:
    """A ``VisualBertConfig`` carrying the hf_vcr fields the collator and adapter read.

    Any VisualBERT size works; the defaults of the other fields give a tiny model for tests
    and the embedded data.
    """
    if visual_source not in ("backbone", "features", "none"):
        raise ValueError(f"visual_source must be 'backbone', 'features' or 'none', got {visual_source!r}")
    if visual_source == "backbone":
        visual_dim = 3 * roi_output_size**2 + BOX_DIM
    elif visual_source == "features":
        visual_dim = region_feature_dim + BOX_DIM
    else:
        visual_dim = BOX_DIM
    tiny = dict(
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=128,
        max_position_embeddings=128,
    )
    tiny.update(kwargs)
    return VisualBertConfig(
        vocab_size=vocab_size,
        visual_embedding_dim=visual_dim,
        visual_source=visual_source,
        region_feature_dim=region_feature_dim,
        roi_output_size=roi_output_size,
        image_size=list(image_size),
        image_mean=[0.485, 0.456, 0.406],
        image_std=[0.229, 0.224, 0.225],
        max_objects=max_objects,
        attn_implementation="eager",
        **tiny,
    )


class VisualBertForVcr(VisualBertForMultipleChoice):
    """``VisualBertForMultipleChoice`` taking hf_vcr batches and exposing ``pooled_output [B, C, H]``."""

    def visual_embeddings(self, boxes, box_mask, pixel_values=None, region_features=None) -> torch.Tensor:
        """Per-object visual embeddings ``[B, N, visual_embedding_dim]``."""
        cfg = self.config
        source = getattr(cfg, "visual_source", "none")
        if source == "backbone":
            if pixel_values is None:
                raise ValueError("this VisualBertForVcr config uses visual_source='backbone': pass pixel_values")
            h, w = pixel_values.shape[-2:]
            pooled = roi_align(pixel_values, boxes, cfg.roi_output_size, 1.0)  # [B, N, 3, r, r]
            parts = [pooled.flatten(2)]
        elif source == "features":
            if region_features is None:
                raise ValueError("this VisualBertForVcr config uses visual_source='features': pass region_features")
            h, w = cfg.image_size
            parts = [region_features]
        else:
            h, w = cfg.image_size
            parts = []
        b = boxes / boxes.new_tensor([w, h, w, h])
        area = ((b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])).unsqueeze(-1)
        feats = torch.cat(parts + [b, area], dim=-1)
        return feats * box_mask.unsqueeze(-1).to(feats.dtype)

    @staticmethod
    def alignment(object_ids: torch.Tensor, n_objects: int, max_alignment: int = MAX_ALIGNMENT) -> torch.Tensor:
        """``image_text_alignment [B*C, N, K]``: positions of the (first K) tokens naming each object, -1 padded."""
        BC, L = object_ids.shape
        match = object_ids[:, None, :] == torch.arange(n_objects, device=object_ids.device)[None, :, None]  # [BC, N, L]
        positions = torch.arange(L, device=object_ids.device).expand(BC, n_objects, L)
        ranked = torch.where(match, positions, torch.full_like(positions, L + 1)).sort(dim=-1).values[..., :max_alignment]
        return torch.where(ranked > L, torch.full_like(ranked, -1), ranked)

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
        **kwargs,
    ) -> VcrMultipleChoiceOutput:
        B, C, L = input_ids.shape
        flat = lambda t: None if t is None else t.reshape(B * C, *t.shape[2:])  # noqa: E731
        visual = visual_mask = alignment = None
        if boxes is not None and box_mask is not None:
            objects = self.visual_embeddings(boxes, box_mask, pixel_values, region_features)  # [B, N, D]
            N = objects.shape[1]
            visual = objects.repeat_interleave(C, dim=0)
            visual_mask = box_mask.repeat_interleave(C, dim=0).to(attention_mask.dtype if attention_mask is not None else torch.long)
            if object_ids is not None:
                alignment = self.alignment(flat(object_ids), N)
                # an object no token names still needs one (padding) alignment slot
                alignment = torch.where(
                    (alignment == -1).all(-1, keepdim=True) & (torch.arange(alignment.shape[-1], device=alignment.device) == 0),
                    torch.zeros_like(alignment),
                    alignment,
                )
        outputs = self.visual_bert(
            flat(input_ids),
            attention_mask=flat(attention_mask),
            token_type_ids=flat(token_type_ids),
            visual_embeds=visual,
            visual_attention_mask=visual_mask,
            image_text_alignment=alignment,
            output_attentions=output_attentions,
            return_dict=True,
        )
        pooled = outputs.pooler_output
        logits = self.cls(self.dropout(pooled)).view(B, C)
        if attention_mask is not None:
            logits = logits.masked_fill(attention_mask.sum(-1) == 0, torch.finfo(logits.dtype).min)
        loss = torch.nn.functional.cross_entropy(logits, labels, ignore_index=-100) if labels is not None else None
        return VcrMultipleChoiceOutput(
            loss=loss, logits=logits, pooled_output=pooled.view(B, C, -1), attentions=outputs.attentions if output_attentions else None
        )


def input_embedding_module(model: torch.nn.Module) -> torch.nn.Embedding:
    """The word-embedding table of any hf_vcr-compatible scorer (``VcrForMultipleChoice``, adapters)."""
    model = getattr(model, "module", model)
    try:
        emb = model.get_input_embeddings()
    except (NotImplementedError, AttributeError):
        emb = None
    if emb is None:
        raise ValueError(f"cannot find the input word embeddings of {type(model).__name__}")
    return emb
