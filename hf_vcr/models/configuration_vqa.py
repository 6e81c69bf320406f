"""Configuration of the Pythia-style VQA classifier used by SOrT."""

from __future__ import annotations

from typing import Any

from transformers import AutoConfig, PretrainedConfig


class VqaConfig(PretrainedConfig):
    """Pythia-style VQA (Jiang et al., 2018; the base model of SOrT, Dharur et al., 2021).

    A question encoder, question-guided top-down attention over image regions, an
    element-wise product fusion (the module named ``fusion``, where SOrT takes its
    Grad-CAM vectors) and an MLP classifier over the answer vocabulary (``id2label``).

    Args:
        vocab_size: size of the word vocabulary of the built-in GRU question encoder.
        question_encoder: ``"gru"`` (word embeddings + GRU, as Pythia's LSTM) or ``"transformer"``
            (any transformers encoder given by ``text_config``, e.g. BERT; eager attention is forced
            because SOrT back-propagates through Grad-CAM vectors).
        text_config: config (dict or ``PretrainedConfig``) of the transformers text encoder.
        image_feature_dim: dimension of the precomputed region features.
        vision_config: optional transformers vision backbone (ViT/ResNet config); when set the model
            takes ``pixel_values`` and uses the backbone's patch/grid features as regions.
        hidden_size: fusion (and Grad-CAM vector) dimension.
        classifier_hidden_size: hidden width of the answer classifier.
    """

    model_type = "hf_vcr_vqa"
    sub_configs = {"text_config": AutoConfig, "vision_config": AutoConfig}

    def __init__(
        self,
        vocab_size: int = 30522,
        pad_token_id: int = 0,
        question_encoder: str = "gru",
        word_embedding_dim: int = 300,
        question_hidden_size: int = 1024,
        text_config: dict | PretrainedConfig | None = None,
        image_feature_dim: int = 2048,
        vision_config: dict | PretrainedConfig | None = None,
        hidden_size: int = 5000,
        attention_hidden_size: int = 512,
        classifier_hidden_size: int = 10000,
        dropout: float = 0.1,
        initializer_range: float = 0.02,
        **kwargs: Any,
    ):
        if question_encoder not in ("gru", "transformer"):
            raise ValueError(f"question_encoder must be 'gru' or 'transformer', got {question_encoder!r}")
        if isinstance(text_config, dict):
            text_config = AutoConfig.for_model(**text_config)
        if isinstance(vision_config, dict):
            vision_config = AutoConfig.for_model(**vision_config)
        if question_encoder == "transformer" and text_config is None:
            raise ValueError("question_encoder='transformer' needs a text_config (e.g. a BertConfig)")
        self.vocab_size = vocab_size
        self.question_encoder = question_encoder
        self.word_embedding_dim = word_embedding_dim
        self.question_hidden_size = question_hidden_size
        self.text_config = text_config
        self.image_feature_dim = image_feature_dim
        self.vision_config = vision_config
        self.hidden_size = hidden_size
        self.attention_hidden_size = attention_hidden_size
        self.classifier_hidden_size = classifier_hidden_size
        self.dropout = dropout
        self.initializer_range = initializer_range
        super().__init__(pad_token_id=pad_token_id, **kwargs)

    @classmethod
    def tiny(cls, num_labels: int = 8, vocab_size: int = 64, image_feature_dim: int = 16, **kwargs) -> "VqaConfig":
        """A tiny configuration for tests and the embedded synthetic set."""
        defaults = dict(
            vocab_size=vocab_size,
            word_embedding_dim=32,
            question_hidden_size=32,
            image_feature_dim=image_feature_dim,
            hidden_size=32,
            attention_hidden_size=32,
            classifier_hidden_size=64,
            dropout=0.0,
            id2label={i: f"answer_{i}" for i in range(num_labels)},
        )
        defaults.update(kwargs)
        return cls(**defaults)

    @property
    def question_dim(self) -> int:
        if self.question_encoder == "transformer":
            return self.text_config.hidden_size
        return self.question_hidden_size
