"""Training arguments of EIGV (Equivariant and Invariant Grounding for Interpretable VideoQA, Li et al., MM 2022)."""

from __future__ import annotations

from dataclasses import dataclass, field


from .training_args import HfVcrTrainingArguments

EIGV_OBJECTIVES = ("eigv", "erm")


@dataclass
class EigvConfig(HfVcrTrainingArguments):
    """``TrainingArguments`` + the EIGV objective (eq. 10-20).

    Defaults follow the paper: ``beta = 0.75`` (eq. 20), the raw dot product in InfoNCE (eq. 18),
    ``lambda0 ~ Beta(alpha, alpha)`` and ``lambda1 ~ U(0, 1)``. ``objective="erm"`` trains the same
    backbone with plain cross entropy (the baseline EIGV is compared against).
    """

    objective: str = field(
        default="eigv",
        metadata={"help": "'eigv' (eq. 20: ERM on the intervened sample + beta * InfoNCE) or 'erm' (plain cross entropy: the baseline).",
                  "choices": list(EIGV_OBJECTIVES)},
    )
    eigv_beta: float = field(default=0.75, metadata={"help": "beta of eq. 20, the weight of the contrastive loss (paper: 0.75; released code: 0.0125)."})
    mix_alpha: float = field(default=1.0, metadata={"help": "alpha of lambda0 ~ Beta(alpha, alpha), the E-intervention ratio (eq. 10-12)."})
    num_video_negatives: int = field(
        default=3, metadata={"help": "Negatives per anchor whose causal scene is replaced by memory-bank clips (v-, q*)."}
    )
    num_question_negatives: int = field(
        default=2, metadata={"help": "Negatives per anchor whose question is swapped for another sample's (v*, q_r); never the anchor's own."}
    )
    memory_bank_size: int = field(
        default=4096, metadata={"help": "Clips kept in the memory bank (a ring buffer refreshed from every training batch; per process)."}
    )
    contrastive_temperature: float = field(default=1.0, metadata={"help": "Similarities of eq. 18 are divided by this (paper: 1)."})
    contrastive_normalize: bool = field(
        default=False, metadata={"help": "Use cosine instead of the raw dot product in eq. 18 (the released code does, with temperature 0.1)."}
    )
    erm_warmup_steps: int = field(
        default=0,
        metadata={"help": "Train the first N steps with plain ERM, then with the EIGV objective (0 = EIGV from the first step). "
                  "The same as starting EIGV from an ERM checkpoint (--model_name_or_path): the intervener and the "
                  "disruptor only carry signal once the backbone answers from the clips (docs/eigv.md)."},
    )
    causal_ratio_weight: float = field(
        default=0.0,
        metadata={"help": "Weight of an optional prior (not in the paper) pulling the fraction of causal clips towards "
                  "causal_ratio; 0 = the paper. Without it nothing keeps the causal scene from growing to the whole video."},
    )
    causal_ratio: float = field(default=0.25, metadata={"help": "Target fraction of causal clips of the optional prior."})
    remove_unused_columns: bool = field(
        default=False, metadata={"help": "Kept False: the VideoQA collator reads the video ids, questions and options."}
    )

    def __post_init__(self):
        if self.objective not in EIGV_OBJECTIVES:
            raise ValueError(f"objective must be one of {EIGV_OBJECTIVES}, got {self.objective!r}")
        if self.mix_alpha <= 0:
            raise ValueError(f"mix_alpha must be > 0, got {self.mix_alpha}")
        if self.num_video_negatives < 0 or self.num_question_negatives < 0:
            raise ValueError("the numbers of negatives must be >= 0")
        if self.erm_warmup_steps < 0:
            raise ValueError(f"erm_warmup_steps must be >= 0, got {self.erm_warmup_steps}")
        if self.memory_bank_size < 1:
            raise ValueError(f"memory_bank_size must be >= 1, got {self.memory_bank_size}")
        if not 0.0 < self.causal_ratio < 1.0 or self.causal_ratio_weight < 0:
            raise ValueError("causal_ratio must be in (0, 1) and causal_ratio_weight >= 0")
        if self.contrastive_temperature <= 0:
            raise ValueError(f"contrastive_temperature must be > 0, got {self.contrastive_temperature}")
        super().__post_init__()

    @property
    def num_negatives(self) -> int:
        return self.num_video_negatives + self.num_question_negatives


@dataclass
class EigvModelArguments:
    model_name_or_path: str | None = field(default=None, metadata={"help": "Start from a saved VideoQa model directory."})
    text_encoder: str | None = field(
        default=None, metadata={"help": "Pretrained text encoder name/path (e.g. bert-base-uncased); default: a tiny random BERT (text_config)."}
    )
    text_config: str | None = field(default=None, metadata={"help": "JSON of a transformers text config for a random encoder (default: tiny BERT)."})
    tokenizer_name: str | None = field(default=None, metadata={"help": "Tokenizer name/path; default: a word tokenizer built from the data."})
    hidden_size: int = field(default=512, metadata={"help": "d, the cross-modal width (paper: 512)."})
    num_fusion_layers: int = field(default=2, metadata={"help": "Fusion transformer layers."})
    num_attention_heads: int = field(default=8, metadata={"help": "Fusion attention heads."})
    intermediate_size: int = field(default=2048, metadata={"help": "Fusion feed-forward size."})
    dropout: float = field(default=0.1, metadata={"help": "Fusion dropout."})
    gumbel_tau: float | None = field(
        default=None, metadata={"help": "Gumbel-softmax temperature of the grounding indicator (eq. 8); default 1.0, or the saved model's."}
    )
    gumbel_logits: str | None = field(
        default=None,
        metadata={"help": "How [p_c; p_e] enter eq. 8's Gumbel-softmax: 'probabilities' (as written, and the released code; "
                  "the default) or 'log_probabilities'; default: the saved model's when warm-starting.", "choices": ["probabilities", "log_probabilities"]},
    )


@dataclass
class EigvDataArguments:
    dataset: str = field(default="synthetic", metadata={"help": "synthetic | nextqa | msvd_qa | msrvtt_qa"})
    data_dir: str | None = field(default=None, metadata={"help": "Synthetic data directory (default: OUTPUT_DIR/synthetic_data)."})
    synthetic_seed: int = field(default=0, metadata={"help": "Seed of the synthetic set."})
    synthetic_train: int = field(default=2000, metadata={"help": "Synthetic training questions."})
    synthetic_val: int = field(default=500, metadata={"help": "Synthetic validation questions."})
    synthetic_clips: int = field(default=16, metadata={"help": "Clips per synthetic video."})
    synthetic_feature_dim: int = field(default=128, metadata={"help": "Synthetic clip feature size."})
    synthetic_noise: float = field(default=0.5, metadata={"help": "Noise of the synthetic clip features."})
    synthetic_spurious: float = field(default=0.8, metadata={"help": "How often a synthetic training scene is the answer's (shortcut)."})
    train_file: str | None = field(default=None, metadata={"help": "Training annotations (NExT-QA csv, or {split}_qa.json / csv)."})
    validation_file: str | None = field(default=None, metadata={"help": "Validation annotations."})
    train_features: str | None = field(default=None, metadata={"help": "h5 clip features (NExT-QA app_mot; open-ended: APP.h5,MOT.h5)."})
    validation_features: str | None = field(default=None, metadata={"help": "h5 clip features of the validation split."})
    answer_top_k: int = field(default=1000, metadata={"help": "Open-ended: classify over the top-k answers of the train split."})
    answer_set: str | None = field(default=None, metadata={"help": "Open-ended: an answer vocabulary file instead (e.g. answer_set.txt)."})
    max_length: int = field(default=40, metadata={"help": "Maximum question (+ option) length in tokens."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Evaluate on the first N validation questions."})
    num_grounding_examples: int = field(default=8, metadata={"help": "Examples drawn in causal_masks.png."})
