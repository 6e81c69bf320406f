"""Configuration of :class:`~hf_vcr.trainers.joint_trainer.JointTrainer` and ``scripts/train_joint.py``."""

from __future__ import annotations

from dataclasses import dataclass, field

from transformers import TrainingArguments

COUPLINGS = ("softmax", "gumbel", "rl", "direct16", "baseline75")


@dataclass
class JointConfig(TrainingArguments):
    """Joint Q→AR coupling ("Enforcing Reasoning in Visual Commonsense Reasoning")."""

    backbone: str = field(
        default="vcr",
        metadata={"help": "Scorer for the answer and rationale models: 'vcr' (hf_vcr VcrForMultipleChoice) or "
                          "'visualbert' (transformers VisualBertForMultipleChoice through hf_vcr's adapter)."},
    )
    coupling: str = field(
        default="softmax",
        metadata={"help": "How the answer reaches the rationale model: 'softmax' (eq. 1), 'gumbel' (eq. 2, τ annealed), "
                          "'rl' (sampled answers, expectation loss eq. 4), 'direct16' (16-way cross entropy), "
                          "'baseline75' (the right answer 75% of the time, a random other one otherwise)."},
    )
    loss_ratio: str = field(
        default="1:1", metadata={"help": "Q→A loss : QA→R loss weights, e.g. '1:1' (paper) or '1:4' (Table 4 ablation)."}
    )
    gumbel_tau_start: float = field(default=5.0, metadata={"help": "Gumbel-softmax temperature at the start of training."})
    gumbel_tau_end: float = field(default=1.0, metadata={"help": "Gumbel-softmax temperature after annealing (then held)."})
    gumbel_anneal_epochs: float = field(default=10.0, metadata={"help": "Epochs over which τ falls linearly (paper: 10)."})
    rl_num_samples: int = field(default=64, metadata={"help": "Answers sampled per item for the expectation loss (paper: 64)."})
    rl_baseline: str = field(
        default="none", metadata={"help": "'none' (plain REINFORCE, as in the paper) or 'mean' (per-item mean sampled loss)."}
    )
    baseline_p_correct: float = field(default=0.75, metadata={"help": "baseline75: probability of feeding the right answer."})
    remove_unused_columns: bool = field(
        default=False, metadata={"help": "Keep every view's columns: the collator, not the model, consumes them."}
    )

    @property
    def loss_weights(self) -> tuple[float, float]:
        return parse_ratio(self.loss_ratio)

    def __post_init__(self):
        super().__post_init__()
        if self.coupling not in COUPLINGS:
            raise ValueError(f"coupling must be one of {COUPLINGS}, got {self.coupling!r}")
        if self.backbone not in ("vcr", "visualbert"):
            raise ValueError(f"backbone must be 'vcr' or 'visualbert', got {self.backbone!r}")
        if self.rl_num_samples < 1:
            raise ValueError(f"rl_num_samples must be at least 1, got {self.rl_num_samples}")
        parse_ratio(self.loss_ratio)


def parse_ratio(text: str) -> tuple[float, float]:
    try:
        a, b = (float(x) for x in str(text).split(":"))
    except ValueError:
        raise ValueError(f"loss_ratio must look like '1:1' or '1:4', got {text!r}") from None
    if a < 0 or b < 0 or a + b == 0:
        raise ValueError(f"loss_ratio weights must be non-negative and not both zero, got {text!r}")
    return a, b
