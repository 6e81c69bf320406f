"""Training arguments of the LSKD critic (Park et al., 2023, section 2.3)."""

from __future__ import annotations

from dataclasses import dataclass, field

from transformers import TrainingArguments


@dataclass
class CriticConfig(TrainingArguments):
    """``TrainingArguments`` + the critic objective ``ce_weight * CE + qa_mse_weight * MSE(QA) + rationale_mse_weight * MSE(R)``.

    Paper values: batch 256, lr 1e-5, at most 10 epochs, the image encoder trained too; filtering threshold 0.8.
    """

    ce_weight: float = field(default=1.0, metadata={"help": "Weight of the accept/reject cross entropy."})
    qa_mse_weight: float = field(default=1.0, metadata={"help": "Weight of the QA-score regression (MSE)."})
    rationale_mse_weight: float = field(default=1.0, metadata={"help": "Weight of the rationale-score regression (MSE onto r_score)."})
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
