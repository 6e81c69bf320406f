"""Training arguments of the LSKD critic (Park et al., 2023, section 2.3)."""

from __future__ import annotations

from dataclasses import dataclass, field


from .training_args import HfVcrTrainingArguments


@dataclass
class CriticConfig(HfVcrTrainingArguments):
    """``TrainingArguments`` + the critic objective ``ce_weight * CE + qa_mse_weight * MSE(QA) + rationale_mse_weight * MSE(R)``.

    Paper values: batch 256, lr 1e-5, at most 10 epochs, the image encoder trained too; filtering threshold 0.8.
    The paper gives no loss weights; the released code uses 1 / 0.5 / 0.5 (the defaults).
    """

    ce_weight: float = field(default=1.0, metadata={"help": "Weight of the accept/reject cross entropy (released: 1)."})
    qa_mse_weight: float = field(default=0.5, metadata={"help": "Weight of the QA-score regression (MSE; released: 0.5)."})
    rationale_mse_weight: float = field(default=0.5, metadata={"help": "Weight of the rationale-score regression (MSE onto r_score; released: 0.5)."})
    freeze_vision: bool = field(default=False, metadata={"help": "Freeze the image encoder (the paper trains it for the critic)."})
    threshold: float = field(default=0.8, metadata={"help": "Acceptance threshold used for the precision metric (and filtering)."})
    with_rationale: bool = field(default=True, metadata={"help": "Critic text is 'Q Answer: A Rationale: R' (True) or 'Q Answer: A'."})
    remove_unused_columns: bool = field(default=False, metadata={"help": "Kept False: the collator needs the raw corpus columns."})
    label_names: list[str] | None = field(
        default_factory=lambda: ["labels"], metadata={"help": "Kept ['labels']: the accept/reject labels returned for evaluation metrics."}
    )

    def __post_init__(self):
        if min(self.ce_weight, self.qa_mse_weight, self.rationale_mse_weight) < 0:
            raise ValueError("loss weights must be non-negative")
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], got {self.threshold}")
        super().__post_init__()


@dataclass
class CriticModelArguments:
    model_name_or_path: str | None = field(default=None, metadata={"help": "Saved LskdCriticModel (or a converted BLIP-2 ITM checkpoint); default: a tiny random model."})
    tokenizer_name: str | None = field(default=None, metadata={"help": "Tokenizer name or path; default: a word-level tokenizer built from the data."})
    image_size: int = field(default=32, metadata={"help": "Image size of the tiny model / image processor."})
    patch_size: int = field(default=8, metadata={"help": "ViT patch size of the tiny model."})
    hidden_size: int = field(default=64, metadata={"help": "Hidden size of the tiny model."})
    num_query_tokens: int = field(default=8, metadata={"help": "Learned query tokens of the tiny model."})
    critic_head: str = field(
        default="released",
        metadata={"help": "'released': the ITM head classifies and per-query MLPs regress the scores (blip2_critic.py); "
                  "'linear': new linear heads on the mean query output (hf_vcr's earlier head).", "choices": ["released", "linear"]},
    )


@dataclass
class CriticDataArguments:
    synthetic: bool = field(default=False, metadata={"help": "Generate and use the embedded synthetic critic set."})
    synthetic_dir: str | None = field(default=None, metadata={"help": "Where the synthetic files go (default: OUTPUT_DIR/synthetic_data)."})
    synthetic_items: int = field(default=1200, metadata={"help": "Synthetic annotated QARs (4/5 train, 1/5 eval)."})
    synthetic_seed: int = field(default=0, metadata={"help": "Seed of the synthetic data."})
    train_file: str | None = field(default=None, metadata={"help": "Annotated jsonl (label, qa_score, r_score)."})
    eval_file: str | None = field(default=None, metadata={"help": "Annotated jsonl for evaluation."})
    images_dir: str | None = field(default=None, metadata={"help": "Root of the 'image' paths."})
    region_file: str | None = field(default=None, metadata={"help": "Optional separate region file."})
    max_length: int = field(default=128, metadata={"help": "Text token limit (paper and released code: 128)."})
