"""A Pythia-style VQA classifier (the base model of SOrT, Dharur et al., 2021).

question encoder -> question-guided attention over image regions -> element-wise product
fusion (``model.fusion``, a named module that forward hooks can reach: SOrT's Grad-CAM
vectors are taken at its output) -> MLP classifier over the answer vocabulary, trained with
binary cross entropy against VQA soft scores.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForSequenceClassification,
    AutoModelForVisualQuestionAnswering,
    PreTrainedModel,
)
from transformers.utils import ModelOutput

from ..losses.sort import vqa_bce
from .configuration_vqa import VqaConfig

__all__ = ["VqaConfig", "VqaPreTrainedModel", "VqaForClassification", "VqaOutput", "VqaFusion", "vqa_bce_loss"]


# BCE against soft scores, summed over answers and averaged over questions (Pythia's ``logit_bce``)
vqa_bce_loss = vqa_bce


@dataclass
class VqaOutput(ModelOutput):
    """``logits`` ``[Q, num_labels]``; ``fused`` ``[Q, hidden]`` is the fusion output (Grad-CAM layer);
    ``attention`` ``[Q, K]`` the question-guided region weights; ``region_features`` ``[Q, K, D]`` the
    region features each question attended over (a graph node, for region-level Grad-CAM)."""

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    fused: torch.Tensor | None = None
    attention: torch.Tensor | None = None
    region_features: torch.Tensor | None = None


class QuestionEncoder(nn.Module):
    def __init__(self, config: VqaConfig):
        super().__init__()
        self.kind = config.question_encoder
        if self.kind == "gru":
            self.embeddings = nn.Embedding(config.vocab_size, config.word_embedding_dim, padding_idx=config.pad_token_id)
            self.rnn = nn.GRU(config.word_embedding_dim, config.question_hidden_size, batch_first=True)
        else:
            # eager attention: SOrT differentiates through Grad-CAM vectors (double backward),
            # which SDPA does not support on CPU.
            self.encoder = AutoModel.from_config(config.text_config, attn_implementation="eager")

    def forward(self, input_ids, attention_mask=None, token_type_ids=None):
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        if self.kind == "gru":
            emb = self.embeddings(input_ids)
            lengths = attention_mask.sum(-1).clamp(min=1).cpu()
            packed = nn.utils.rnn.pack_padded_sequence(emb, lengths, batch_first=True, enforce_sorted=False)
            _, h = self.rnn(packed)
            return h[-1]
        kwargs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            kwargs["token_type_ids"] = token_type_ids
        hidden = self.encoder(**kwargs).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)


class QuestionGuidedAttention(nn.Module):
    """Top-down attention: ``a = softmax_k(w · (ReLU(W_v v_k) ⊙ ReLU(W_q q)))``."""

    def __init__(self, config: VqaConfig):
        super().__init__()
        self.v_proj = nn.Linear(config.image_feature_dim, config.attention_hidden_size)
        self.q_proj = nn.Linear(config.question_dim, config.attention_hidden_size)
        self.dropout = nn.Dropout(config.dropout)
        self.score = nn.Linear(config.attention_hidden_size, 1, bias=False)  # a bias cancels in the softmax

    def forward(self, regions, question, region_mask=None):
        joint = F.relu(self.v_proj(regions)) * F.relu(self.q_proj(question)).unsqueeze(1)
        logits = self.score(self.dropout(joint)).squeeze(-1)
        if region_mask is not None:
            logits = logits.masked_fill(region_mask == 0, torch.finfo(logits.dtype).min)
        return logits.softmax(-1)


class VqaFusion(nn.Module):
    """Element-wise product fusion of the attended image and the question: ``ReLU(W_i v) ⊙ ReLU(W_q q)``.

    Its output is the layer "where the vision and language modalities are combined" at which
    SOrT computes Grad-CAM vectors (eq. 1)."""

    def __init__(self, config: VqaConfig):
        super().__init__()
        self.image_proj = nn.Linear(config.image_feature_dim, config.hidden_size)
        self.question_proj = nn.Linear(config.question_dim, config.hidden_size)

    def forward(self, attended_image, question):
        return F.relu(self.image_proj(attended_image)) * F.relu(self.question_proj(question))


class VqaPreTrainedModel(PreTrainedModel):
    config_class = VqaConfig
    base_model_prefix = "vqa"
    main_input_name = "input_ids"
    supports_gradient_checkpointing = False

    def _init_weights(self, module):
        if isinstance(module, nn.Linear):
            nn.init.xavier_uniform_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=0.1)
            if module.padding_idx is not None:
                with torch.no_grad():
                    module.weight[module.padding_idx].zero_()
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.GRU):
            for name, p in module.named_parameters():
                if "weight" in name:
                    nn.init.xavier_uniform_(p)
                else:
                    nn.init.zeros_(p)


class VqaForClassification(VqaPreTrainedModel):
    """Pythia-style VQA over region features (or a transformers vision backbone).

    Questions and images may come in different numbers: with ``question_image_index`` ``[Q]``,
    ``image_features`` is ``[B, K, D]`` (one per image) and question ``q`` looks at image
    ``question_image_index[q]`` -- the reasoning, sub- and irrelevant questions of a SOrT batch
    share their image and go through the model in one pass.
    """

    def __init__(self, config: VqaConfig):
        super().__init__(config)
        if config.vision_config is not None:
            self.vision_model = AutoModel.from_config(config.vision_config, attn_implementation="eager")
            vis_dim = getattr(config.vision_config, "hidden_size", None) or config.vision_config.hidden_sizes[-1]
            self.vision_proj = nn.Linear(vis_dim, config.image_feature_dim) if vis_dim != config.image_feature_dim else nn.Identity()
        self.question_encoder = QuestionEncoder(config)
        self.attention = QuestionGuidedAttention(config)
        self.fusion = VqaFusion(config)
        self.classifier = nn.Sequential(
            nn.Linear(config.hidden_size, config.classifier_hidden_size),
            nn.ReLU(),
            nn.Dropout(config.dropout),
            nn.Linear(config.classifier_hidden_size, config.num_labels),
        )
        self.post_init()

    def encode_image(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Backbone patch / grid features as regions ``[B, K, D]`` and their mask."""
        if not hasattr(self, "vision_model"):
            raise ValueError("this VqaConfig has no vision_config: pass precomputed image_features")
        out = self.vision_model(pixel_values=pixel_values).last_hidden_state
        if out.dim() == 4:  # CNN feature map [B, C, H, W] -> grid regions
            out = out.flatten(2).transpose(1, 2)
        regions = self.vision_proj(out)
        return regions, torch.ones(regions.shape[:2], dtype=torch.long, device=regions.device)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        image_features: torch.Tensor | None = None,
        image_mask: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        question_image_index: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> VqaOutput:
        if image_features is None:
            if pixel_values is None:
                raise ValueError("pass image_features [B, K, D] or pixel_values")
            image_features, image_mask = self.encode_image(pixel_values)
        if image_mask is None:
            image_mask = torch.ones(image_features.shape[:2], dtype=torch.long, device=image_features.device)
        if question_image_index is not None:
            image_features = image_features.index_select(0, question_image_index)
            image_mask = image_mask.index_select(0, question_image_index)
        elif image_features.shape[0] != input_ids.shape[0]:
            raise ValueError(
                f"{input_ids.shape[0]} questions but {image_features.shape[0]} images: pass question_image_index"
            )
        question = self.question_encoder(input_ids, attention_mask, token_type_ids)
        attn = self.attention(image_features, question, image_mask)
        attended = torch.bmm(attn.unsqueeze(1), image_features).squeeze(1)
        fused = self.fusion(attended, question)
        logits = self.classifier(fused)
        loss = vqa_bce_loss(logits, labels.to(logits.dtype)) if labels is not None else None
        return VqaOutput(loss=loss, logits=logits, fused=fused, attention=attn, region_features=image_features)


AutoConfig.register(VqaConfig.model_type, VqaConfig)
AutoModel.register(VqaConfig, VqaForClassification)
AutoModelForSequenceClassification.register(VqaConfig, VqaForClassification)
AutoModelForVisualQuestionAnswering.register(VqaConfig, VqaForClassification)
