"""hf_vcr's VideoQA model: K clip features + a question encoder, fused by a small transformer.

Two heads share :class:`VideoQaModel`:

* :class:`VideoQaForMultipleChoice` (NExT-QA): the question is paired with each option
  (``input_ids`` ``[B, C, L]``), each pair is fused with the clips and scored; ``logits`` ``[B, C]``.
* :class:`VideoQaForClassification` (MSVD-QA / MSRVTT-QA): ``input_ids`` ``[B, L]``, ``logits`` over the
  answer vocabulary.

The model carries the grounding indicator of EIGV (Li et al., ACM MM 2022, eq. 6-9), so at inference it
returns the answer *and* ``causal_mask`` ``[B, K]``, the clips grounded as the causal scene.

EIGV training (``hf_vcr.trainers.eigv_trainer``) uses the model through four methods that any
backbone working on clip features can provide: :meth:`encode` (clip and question states),
:meth:`project_clips` (raw clip features -> clip states, for memory-bank clips), :meth:`ground`
(the indicator) and :meth:`answer` (clip states + question states -> logits and answer representation),
which takes any number of views stacked on the batch axis, so all views run in one forward.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForMultipleChoice,
    AutoModelForSequenceClassification,
    PreTrainedModel,
)
from transformers.utils import ModelOutput

from ..losses.eigv import causal_probability, gumbel_split
from .configuration_videoqa import VideoQaConfig


@dataclass
class VideoQaOutput(ModelOutput):
    """Output of the VideoQA heads.

    loss: cross entropy with ``labels`` (when given).
    logits: ``[B, C]`` (multiple choice) or ``[B, num_answers]``.
    pooled_output: the fused answer representation, ``[B, C, d]`` or ``[B, d]``.
    causal_mask: ``[B, K]`` 0/1, clips grounded as the causal scene (deterministic at eval).
    causal_probs: ``[B, K]``, the probability with which training draws each clip into the causal scene
        (``hf_vcr.losses.eigv.causal_probability``): how strongly each clip is causal.
    """

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    pooled_output: torch.Tensor | None = None
    causal_mask: torch.Tensor | None = None
    causal_probs: torch.Tensor | None = None


class GroundingIndicator(nn.Module):
    """EIGV eq. 6-8: two cross-modal attentions over the clips and a hard Gumbel-softmax split.

    ``p_c = Softmax_K(FC1(v) . FC2(q))``, ``p_e = Softmax_K(FC3(v) . FC4(q))``, ``I = GumbelSoftmax([p_c; p_e])``.
    """

    def __init__(self, hidden_size: int, grounding_size: int):
        super().__init__()
        self.fc1 = nn.Linear(hidden_size, grounding_size)
        self.fc2 = nn.Linear(hidden_size, grounding_size)
        self.fc3 = nn.Linear(hidden_size, grounding_size)
        self.fc4 = nn.Linear(hidden_size, grounding_size)
        self.scale = grounding_size**-0.5

    def probabilities(self, v: torch.Tensor, q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``v`` ``[B, K, d]``, ``q`` ``[B, d]`` -> ``(p_c, p_e)``, each ``[B, K]`` (eq. 6-7)."""
        p_c = torch.softmax(torch.einsum("bkh,bh->bk", self.fc1(v), self.fc2(q)) * self.scale, dim=-1)
        p_e = torch.softmax(torch.einsum("bkh,bh->bk", self.fc3(v), self.fc4(q)) * self.scale, dim=-1)
        return p_c, p_e

    def forward(self, v: torch.Tensor, q: torch.Tensor, tau: float = 1.0, stochastic: bool = True, logits: str = "probabilities"):
        p_c, p_e = self.probabilities(v, q)
        indicator = gumbel_split(p_c, p_e, tau=tau, hard=True, stochastic=stochastic, logits=logits)
        return indicator, p_c, p_e


class VideoQaPreTrainedModel(PreTrainedModel):
    config_class = VideoQaConfig
    base_model_prefix = "videoqa"
    main_input_name = "clip_features"
    supports_gradient_checkpointing = False
    _no_split_modules = []

    def _init_weights(self, module):
        std = self.config.initializer_range
        if isinstance(module, nn.Linear):
            module.weight.data.normal_(mean=0.0, std=std)
            if module.bias is not None:
                module.bias.data.zero_()
        elif isinstance(module, nn.Embedding):
            module.weight.data.normal_(mean=0.0, std=std)
        elif isinstance(module, nn.LayerNorm):
            module.weight.data.fill_(1.0)
            module.bias.data.zero_()
        elif isinstance(module, VideoQaModel):
            module.answer_token.data.normal_(mean=0.0, std=std)
            module.clip_position.data.normal_(mean=0.0, std=std)
            module.modality.data.normal_(mean=0.0, std=std)


class VideoQaModel(VideoQaPreTrainedModel):
    """Clip encoder, question encoder, grounding indicator and cross-modal fusion (no head)."""

    def __init__(self, config: VideoQaConfig):
        super().__init__(config)
        d = config.hidden_size
        self.video_proj = nn.Sequential(nn.Linear(config.visual_dim, d), nn.LayerNorm(d))
        self.text_encoder = AutoModel.from_config(config.text_config)
        self._text_takes_token_types = "token_type_ids" in inspect.signature(self.text_encoder.forward).parameters
        self.text_proj = nn.Sequential(nn.Linear(config.text_config.hidden_size, d), nn.LayerNorm(d))
        self.grounding = GroundingIndicator(d, config.grounding_size)
        self.answer_token = nn.Parameter(torch.zeros(1, 1, d))
        self.clip_position = nn.Parameter(torch.zeros(1, config.num_clips, d))
        self.modality = nn.Parameter(torch.zeros(2, d))
        layer = nn.TransformerEncoderLayer(
            d, config.num_attention_heads, config.intermediate_size, config.dropout, activation="gelu", batch_first=True, norm_first=True
        )
        self.fusion = nn.TransformerEncoder(layer, config.num_fusion_layers, enable_nested_tensor=False)
        self.fusion_norm = nn.LayerNorm(d)
        self.post_init()

    # ------------------------------------------------------------------ encoders
    def project_clips(self, clip_features: torch.Tensor) -> torch.Tensor:
        """Raw clip features ``[..., visual_dim]`` -> clip states ``[..., d]``."""
        if clip_features.shape[-1] != self.config.visual_dim:
            raise ValueError(f"clip features have size {clip_features.shape[-1]}, the model expects visual_dim={self.config.visual_dim}")
        return self.video_proj(clip_features.to(self.video_proj[0].weight.dtype))

    def encode_question(self, input_ids, attention_mask=None, token_type_ids=None):
        """Token ids ``[..., L]`` -> token states ``[..., L, d]`` and the mask ``[..., L]``."""
        lead = input_ids.shape[:-1]
        flat_ids = input_ids.reshape(-1, input_ids.shape[-1])
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        flat_mask = attention_mask.reshape(-1, attention_mask.shape[-1])
        kwargs = {"input_ids": flat_ids, "attention_mask": flat_mask}
        if token_type_ids is not None and self._text_takes_token_types:
            kwargs["token_type_ids"] = token_type_ids.reshape(-1, token_type_ids.shape[-1])
        states = self.text_encoder(**kwargs).last_hidden_state
        states = self.text_proj(states)
        return states.reshape(*lead, *states.shape[-2:]), attention_mask.to(states.dtype)

    @staticmethod
    def question_vector(q_tokens: torch.Tensor, q_mask: torch.Tensor) -> torch.Tensor:
        """Holistic question vector ``[B, d]``: masked mean over words (and over options for multiple choice)."""
        weights = q_mask.unsqueeze(-1)
        summed = (q_tokens * weights).sum(dim=-2) / weights.sum(dim=-2).clamp_min(1e-6)
        while summed.dim() > 2:
            summed = summed.mean(dim=1)
        return summed

    def encode(self, clip_features, input_ids, attention_mask=None, token_type_ids=None) -> dict[str, torch.Tensor]:
        """``v`` ``[B, K, d]``, question token states ``q_tokens`` ``[B, (C,) L, d]``, ``q_mask`` and ``q_vec`` ``[B, d]``."""
        if clip_features.dim() != 3 or clip_features.shape[1] != self.config.num_clips:
            raise ValueError(
                f"clip_features must be [batch, num_clips={self.config.num_clips}, visual_dim], got {tuple(clip_features.shape)}"
            )
        v = self.project_clips(clip_features)
        q_tokens, q_mask = self.encode_question(input_ids, attention_mask, token_type_ids)
        return {"v": v, "q_tokens": q_tokens, "q_mask": q_mask, "q_vec": self.question_vector(q_tokens, q_mask)}

    def ground(self, v: torch.Tensor, q_vec: torch.Tensor, stochastic: bool | None = None):
        """EIGV eq. 6-8 -> ``(indicator [B, K, 2], p_c, p_e)``; stochastic (Gumbel noise) only in training by default."""
        stochastic = self.training if stochastic is None else stochastic
        return self.grounding(v, q_vec, tau=self.config.gumbel_tau, stochastic=stochastic, logits=self.config.gumbel_logits)

    # -------------------------------------------------------------------- fusion
    def fuse(self, v: torch.Tensor, q_tokens: torch.Tensor, q_mask: torch.Tensor) -> torch.Tensor:
        """Clip states ``[M, K, d]`` and question states ``[M, (C,) L, d]`` -> answer representation ``[M, (C,) d]``."""
        lead = q_tokens.shape[:-2]
        extra = lead[1:]  # (C,) for multiple choice
        if extra:
            n = 1
            for s in extra:
                n *= s
            v = v.unsqueeze(1).expand(v.shape[0], n, *v.shape[1:]).reshape(-1, *v.shape[1:])
        q = q_tokens.reshape(-1, *q_tokens.shape[-2:])
        mask = q_mask.reshape(-1, q_mask.shape[-1])
        m = q.shape[0]
        video = v + self.clip_position[:, : v.shape[1]] + self.modality[0]
        words = q + self.modality[1]
        tokens = torch.cat([self.answer_token.expand(m, -1, -1), video, words], dim=1)
        keep = torch.cat([torch.ones(m, 1 + v.shape[1], dtype=mask.dtype, device=mask.device), mask], dim=1)
        hidden = self.fusion(tokens, src_key_padding_mask=keep <= 0)
        pooled = self.fusion_norm(hidden[:, 0])
        return pooled.reshape(*lead, pooled.shape[-1])

    def causal_outputs(self, v, q_vec):
        """Deterministic grounding for inference: ``(mask [B, K], probability of being drawn causal [B, K])``."""
        with torch.no_grad():
            p_c, p_e = self.grounding.probabilities(v, q_vec)
            probs = causal_probability(p_c, p_e, self.config.gumbel_logits)
            return (p_c > p_e).long(), probs


class _VideoQaHeadModel(VideoQaPreTrainedModel):
    """Shared forward of the two heads; subclasses define ``head`` and the label shape."""

    def __init__(self, config: VideoQaConfig):
        super().__init__(config)
        self.videoqa = VideoQaModel(config)

    # ------------------------------------------------- interface used by EIGV
    def encode(self, clip_features, input_ids, attention_mask=None, token_type_ids=None):
        return self.videoqa.encode(clip_features, input_ids, attention_mask, token_type_ids)

    def project_clips(self, clip_features):
        return self.videoqa.project_clips(clip_features)

    def ground(self, v, q_vec, stochastic=None):
        return self.videoqa.ground(v, q_vec, stochastic)

    def question_vector(self, q_tokens, q_mask):
        return self.videoqa.question_vector(q_tokens, q_mask)

    def answer(self, v, q_tokens, q_mask):
        """``(logits, pooled)`` for clip states ``[M, K, d]`` and question states ``[M, (C,) L, d]``."""
        pooled = self.videoqa.fuse(v, q_tokens, q_mask)
        return self.logits_from_pooled(pooled), pooled

    @staticmethod
    def answer_representation(pooled: torch.Tensor) -> torch.Tensor:
        """The answer representation used by EIGV's contrastive loss: ``pooled`` flattened to ``[M, D]``."""
        return pooled.reshape(pooled.shape[0], -1)

    # ------------------------------------------------------------------- forward
    def forward(
        self,
        clip_features: torch.Tensor,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        return_dict: bool | None = None,
        compute_fn=None,
        **kwargs,
    ) -> VideoQaOutput:
        """Answer logits, the fused representation and the causal clip mask.

        ``compute_fn(model, inputs)``, when given, replaces the computation: a trainer (EIGV) runs its
        multi-view step inside this forward so that DDP / DeepSpeed wrap it like any forward pass.
        Extra keys (e.g. ``video_index``) are passed to ``compute_fn`` and otherwise ignored.
        """
        if compute_fn is not None:
            inputs = dict(clip_features=clip_features, input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids, labels=labels, **kwargs)
            return compute_fn(self, inputs)
        enc = self.encode(clip_features, input_ids, attention_mask, token_type_ids)
        logits, pooled = self.answer(enc["v"], enc["q_tokens"], enc["q_mask"])
        causal_mask, causal_probs = self.videoqa.causal_outputs(enc["v"], enc["q_vec"])
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits, labels.long(), ignore_index=-100)
        return VideoQaOutput(loss=loss, logits=logits, pooled_output=pooled, causal_mask=causal_mask, causal_probs=causal_probs)


class VideoQaForMultipleChoice(_VideoQaHeadModel):
    """NExT-QA-style multiple choice: ``input_ids`` ``[B, C, L]`` (question paired with each option), ``labels`` ``[B]``."""

    def __init__(self, config: VideoQaConfig):
        super().__init__(config)
        self.scorer = nn.Sequential(nn.Linear(config.hidden_size, config.hidden_size), nn.GELU(), nn.Linear(config.hidden_size, 1))
        self.post_init()

    @property
    def num_targets(self) -> int:
        return self.config.num_choices

    def logits_from_pooled(self, pooled):
        return self.scorer(pooled).squeeze(-1)

    def forward(self, clip_features, input_ids, attention_mask=None, token_type_ids=None, labels=None, return_dict=None, compute_fn=None, **kwargs):
        if input_ids.dim() != 3:
            raise ValueError(f"multiple choice input_ids must be [batch, num_choices, length], got {tuple(input_ids.shape)}")
        return super().forward(clip_features, input_ids, attention_mask, token_type_ids, labels, return_dict, compute_fn, **kwargs)


class VideoQaForClassification(_VideoQaHeadModel):
    """Open-ended VideoQA (MSVD-QA, MSRVTT-QA) as classification over ``num_answers`` answers."""

    def __init__(self, config: VideoQaConfig):
        super().__init__(config)
        d = config.hidden_size
        self.classifier = nn.Sequential(nn.Linear(d, d), nn.GELU(), nn.Dropout(config.dropout), nn.Linear(d, config.num_answers))
        self.post_init()

    @property
    def num_targets(self) -> int:
        return self.config.num_answers

    def logits_from_pooled(self, pooled):
        return self.classifier(pooled)

    def forward(self, clip_features, input_ids, attention_mask=None, token_type_ids=None, labels=None, return_dict=None, compute_fn=None, **kwargs):
        if input_ids.dim() != 2:
            raise ValueError(f"classification input_ids must be [batch, length], got {tuple(input_ids.shape)}")
        return super().forward(clip_features, input_ids, attention_mask, token_type_ids, labels, return_dict, compute_fn, **kwargs)


AutoConfig.register(VideoQaConfig.model_type, VideoQaConfig)
AutoModel.register(VideoQaConfig, VideoQaModel)
AutoModelForMultipleChoice.register(VideoQaConfig, VideoQaForMultipleChoice)
AutoModelForSequenceClassification.register(VideoQaConfig, VideoQaForClassification)

__all__ = [
    "VideoQaConfig",
    "VideoQaModel",
    "VideoQaForMultipleChoice",
    "VideoQaForClassification",
    "VideoQaOutput",
    "GroundingIndicator",
]
