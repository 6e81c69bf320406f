"""Configuration of hf_vcr's VideoQA model (clip features + any transformers text encoder)."""

from __future__ import annotations

from typing import Any

from transformers import AutoConfig, PretrainedConfig

from ..losses.eigv import GUMBEL_LOGITS

TINY_TEXT_CONFIG = {
    "model_type": "bert",
    "vocab_size": 128,
    "hidden_size": 32,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "max_position_embeddings": 64,
    "type_vocab_size": 2,
}


def _as_text_config(text_config: Any) -> PretrainedConfig:
    if text_config is None:
        return AutoConfig.for_model("bert")
    if isinstance(text_config, PretrainedConfig):
        return text_config
    if isinstance(text_config, dict):
        values = dict(text_config)
        model_type = values.pop("model_type", "bert")
        return AutoConfig.for_model(model_type, **values)
    raise TypeError(f"text_config must be a dict or a PretrainedConfig, got {type(text_config).__name__}")


class VideoQaConfig(PretrainedConfig):
    r"""Configuration of :class:`VideoQaForMultipleChoice` / :class:`VideoQaForClassification`.

    The video is ``num_clips`` clip features of size ``visual_dim`` (NExT-QA's ``app_mot`` features:
    16 x 4096, appearance then motion). A linear layer maps them to ``hidden_size`` (the paper's
    ``d``); the question (for multiple choice: the question paired with each option) goes through the
    text encoder described by ``text_config`` (any transformers encoder; BERT by default) and a
    linear layer. ``num_fusion_layers`` transformer layers fuse clips and words, and an answer token
    is read out. The grounding indicator of EIGV (eq. 6-9, ``grounding_size`` wide) is part of the
    model, so inference returns the causal clip mask beside the answer.

    Args:
        text_config: dict or config of the text encoder (``model_type`` key picks the architecture).
        visual_dim: size of one clip feature.
        num_clips: K, the number of clips per video.
        hidden_size: d, the cross-modal width.
        num_fusion_layers / num_attention_heads / intermediate_size / dropout: the fusion transformer.
        num_choices: options per question for multiple choice (NExT-QA: 5).
        num_answers: size of the answer vocabulary for open-ended classification (``id2label`` names them).
        grounding_size: width of FC1..FC4 in eq. 6-7.
        gumbel_tau: Gumbel-softmax temperature of eq. 8.
        gumbel_logits: how ``[p_c; p_e]`` enter the Gumbel-softmax of eq. 8: ``"probabilities"`` (as written,
            and the released code) or ``"log_probabilities"`` (see ``hf_vcr.losses.eigv.indicator_logits``).
    """

    model_type = "hf_vcr_videoqa"

    def __init__(
        self,
        text_config: dict | PretrainedConfig | None = None,
        visual_dim: int = 4096,
        num_clips: int = 16,
        hidden_size: int = 512,
        num_fusion_layers: int = 2,
        num_attention_heads: int = 8,
        intermediate_size: int = 2048,
        dropout: float = 0.1,
        num_choices: int = 5,
        num_answers: int = 1000,
        grounding_size: int | None = None,
        gumbel_tau: float = 1.0,
        gumbel_logits: str = "probabilities",
        initializer_range: float = 0.02,
        **kwargs,
    ):
        self.text_config = _as_text_config(text_config)
        self.visual_dim = visual_dim
        self.num_clips = num_clips
        self.hidden_size = hidden_size
        self.num_fusion_layers = num_fusion_layers
        self.num_attention_heads = num_attention_heads
        self.intermediate_size = intermediate_size
        self.dropout = dropout
        self.num_choices = num_choices
        self.num_answers = num_answers
        self.grounding_size = grounding_size or hidden_size
        self.gumbel_tau = gumbel_tau
        if gumbel_logits not in GUMBEL_LOGITS:
            raise ValueError(f"gumbel_logits must be one of {GUMBEL_LOGITS}, got {gumbel_logits!r}")
        self.gumbel_logits = gumbel_logits
        self.initializer_range = initializer_range
        if hidden_size % num_attention_heads:
            raise ValueError(f"hidden_size {hidden_size} must be divisible by num_attention_heads {num_attention_heads}")
        super().__init__(**kwargs)

    @classmethod
    def tiny(cls, **overrides) -> "VideoQaConfig":
        """A tiny random configuration for tests and the embedded synthetic set."""
        values = dict(
            text_config=dict(TINY_TEXT_CONFIG),
            visual_dim=64,
            num_clips=8,
            hidden_size=32,
            num_fusion_layers=1,
            num_attention_heads=2,
            intermediate_size=64,
            dropout=0.0,
            num_choices=5,
            num_answers=10,
        )
        values.update(overrides)
        return cls(**values)


__all__ = ["VideoQaConfig", "TINY_TEXT_CONFIG"]
