"""Configurations of the LSKD student and critic (BLIP-2 configurations with a few extra fields).

Both are :class:`transformers.Blip2Config` subclasses, so a released BLIP-2 configuration
(e.g. ``Salesforce/blip2-itm-vit-g``) converts with ``LskdStudentConfig(**blip2.to_dict())``.
The Q-Former must take text input (``qformer_config.use_qformer_text_input=True``); it is
switched on here.
"""

from __future__ import annotations

from huggingface_hub.dataclasses import strict
from transformers import Blip2Config


def _with_text_input(config: Blip2Config) -> None:
    config.qformer_config.use_qformer_text_input = True


@strict
class LskdStudentConfig(Blip2Config):
    r"""BLIP-2 stage-1 student (Q-Former with ITC / ITM / ITG heads) for LSKD.

    temperature_init (`float`, defaults to 0.07): initial ITC temperature (learnable, clamped to
        ``[temperature_min, temperature_max]``).
    freeze_vision (`bool`, defaults to True): keep the vision encoder frozen (LSKD trains only the Q-Former side;
        False gives full fine-tuning, e.g. for the benchmark's baseline). The vision post-layernorm (LAVIS's
        ``ln_vision``, a separate module there) is not part of the frozen encoder and trains, as in LAVIS.
    tie_word_embeddings (`bool`, defaults to True): tie the ITG language-model head to the
        Q-Former word embeddings.
    decoder_start_token_id (`int`, optional): token put at position 0 of the ITG input
        (BLIP-2's ``[DEC]``). When not given it is the last id of the Q-Former vocabulary: LAVIS adds
        ``[DEC]`` as the one token after BERT's vocabulary (id 30522 of the 30523 of the released BLIP-2
        checkpoints), which is also the id a BERT tokenizer gives ``[DEC]`` once it is added.
    """

    model_type = "lskd_student"
    temperature_init: float = 0.07
    temperature_min: float = 0.001
    temperature_max: float = 0.5
    tie_word_embeddings: bool = True
    decoder_start_token_id: int | None = None
    freeze_vision: bool = True

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        _with_text_input(self)
        if self.decoder_start_token_id is None:
            self.decoder_start_token_id = self.qformer_config.vocab_size - 1


CRITIC_HEADS = ("released", "linear")


@strict
class LskdCriticConfig(Blip2Config):
    r"""LSKD critic: Q-Former + the accept/reject classifier + QA-score and rationale-score heads.

    critic_head (`str`, defaults to "released"): ``"released"`` is the released critic (``blip2_critic.py``):
        accept/reject from the (pre-trained) ITM head on every multimodal query output, averaged over the
        queries, and each score from an MLP (Linear-ReLU-Linear) on every query output, averaged over the
        queries. ``"linear"`` is hf_vcr's earlier head: new linear layers (accept/reject and the two scores) on
        the mean query output after dropout.
    critic_dropout (`float`, defaults to 0.1): dropout before the ``"linear"`` heads (the released head has none).
    """

    model_type = "lskd_critic"
    critic_head: str = "released"
    critic_dropout: float = 0.1
    tie_word_embeddings: bool = False

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        _with_text_input(self)
        if self.critic_head not in CRITIC_HEADS:
            raise ValueError(f"critic_head must be one of {CRITIC_HEADS}, got {self.critic_head!r}")


def _tiny_parts(vocab_size: int, image_size: int, patch_size: int, hidden: int, dropout: float) -> dict:
    return dict(
        vision_config=dict(
            hidden_size=hidden,
            intermediate_size=2 * hidden,
            num_hidden_layers=1,
            num_attention_heads=2,
            image_size=image_size,
            patch_size=patch_size,
            attention_dropout=0.0,
            initializer_range=0.02,  # Blip2VisionConfig defaults to 1e-10, which leaves a random encoder at ~0
        ),
        qformer_config=dict(
            hidden_size=hidden,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=2 * hidden,
            vocab_size=vocab_size,
            max_position_embeddings=128,
            cross_attention_frequency=1,
            hidden_dropout_prob=dropout,
            attention_probs_dropout_prob=dropout,
            use_qformer_text_input=True,
        ),
        text_config=dict(
            model_type="opt",
            vocab_size=vocab_size,
            hidden_size=hidden,
            num_hidden_layers=1,
            ffn_dim=2 * hidden,
            num_attention_heads=2,
            max_position_embeddings=128,
            word_embed_proj_dim=hidden,
        ),
        num_query_tokens=4,
        image_text_hidden_size=hidden // 2,
        # a random tiny Q-Former at BERT's 0.02 starts with nearly identical text features and sits on a long
        # plateau; 0.1 breaks the symmetry (real runs start from a pretrained Q-Former)
        initializer_range=0.1,
    )


def tiny_student_config(vocab_size: int = 128, image_size: int = 32, patch_size: int = 8, hidden: int = 32, dropout: float = 0.0, **kw) -> LskdStudentConfig:
    """A few-thousand-parameter student for tests and the embedded synthetic set."""
    return LskdStudentConfig(**{**_tiny_parts(vocab_size, image_size, patch_size, hidden, dropout), **kw})


def tiny_critic_config(vocab_size: int = 128, image_size: int = 32, patch_size: int = 8, hidden: int = 32, dropout: float = 0.0, **kw) -> LskdCriticConfig:
    return LskdCriticConfig(**{**_tiny_parts(vocab_size, image_size, patch_size, hidden, dropout), "critic_dropout": dropout, **kw})


def tiny_generative_config(vocab_size: int = 128, image_token_index: int | None = None, image_size: int = 32, patch_size: int = 8, hidden: int = 32, **kw) -> Blip2Config:
    """A tiny ``Blip2ForConditionalGeneration`` configuration (OPT language model) for the generative variant."""
    parts = _tiny_parts(vocab_size, image_size, patch_size, hidden, 0.0)
    parts["qformer_config"]["use_qformer_text_input"] = False
    # init_std 0.3: a random *frozen* LM initialised at 0.02 barely reacts to its soft prompt, so the
    # Q-Former could not steer it; a real run loads a pretrained LM instead
    parts["text_config"].update(dropout=0.0, attention_dropout=0.0, pad_token_id=0, bos_token_id=2, eos_token_id=3, init_std=0.3)
    return Blip2Config(**{**parts, "image_token_index": image_token_index, **kw})
