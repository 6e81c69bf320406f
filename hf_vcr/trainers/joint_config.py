"""Configuration of :class:`~hf_vcr.trainers.joint_trainer.JointTrainer` and ``scripts/train_joint.py``."""

from __future__ import annotations

from dataclasses import dataclass, field

from .training_args import HfVcrTrainingArguments

COUPLINGS = ("softmax", "gumbel", "rl", "direct16", "baseline75")
EVAL_ANSWER_FEEDS = ("mixture", "predicted")
RL_BASELINES = ("none", "leave_one_out")


@dataclass
class JointConfig(HfVcrTrainingArguments):
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
        default="1:1",
        metadata={"help": "Q→A loss : QA→R loss weights for every coupling (for direct16 the QA→R loss is the 16-way "
                          "cross entropy), e.g. '1:1' (paper), '1:4' (Table 4 ablation) or '0.2:0.8' (released direct16)."},
    )
    gumbel_tau_start: float = field(default=5.0, metadata={"help": "Gumbel-softmax temperature at the start of training."})
    gumbel_tau_end: float = field(default=1.0, metadata={"help": "Gumbel-softmax temperature after annealing (then held)."})
    gumbel_anneal_epochs: float = field(
        default=10.0,
        metadata={"help": "Epochs over which τ falls linearly, updated once per optimizer step (paper: 10; released: 2)."},
    )
    rl_num_samples: int = field(default=64, metadata={"help": "Answers sampled per item for the expectation loss (paper: 64)."})
    rl_baseline: str = field(
        default="none",
        metadata={"help": "'none' (plain REINFORCE, as in the paper) or 'leave_one_out' (each sample's baseline is the mean "
                          "loss of the item's other samples).", "choices": list(RL_BASELINES)},
    )
    eval_answer_feed: str | None = field(
        default=None,
        metadata={"help": "What evaluation feeds f_R to score Q→AR: 'mixture' (eq. 1's weighted answer, softmax(z_A / τ) "
                          "with τ = 1, or gumbel_tau_end without noise for gumbel; what the paper's and the released softmax "
                          "and Gumbel evaluations feed) or 'predicted' (the argmax answer, one-hot). Unset: 'mixture' for "
                          "softmax and gumbel, 'predicted' for rl, direct16 and baseline75 (trained on one-hot answers).",
                  "choices": list(EVAL_ANSWER_FEEDS)},
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
        if self.rl_baseline not in RL_BASELINES:
            raise ValueError(f"rl_baseline must be one of {RL_BASELINES}, got {self.rl_baseline!r}")
        if self.rl_baseline == "leave_one_out" and self.rl_num_samples < 2:
            raise ValueError("rl_baseline 'leave_one_out' needs rl_num_samples >= 2")
        if self.eval_answer_feed is None:
            self.eval_answer_feed = "mixture" if self.coupling in ("softmax", "gumbel") else "predicted"
        if self.eval_answer_feed not in EVAL_ANSWER_FEEDS:
            raise ValueError(f"eval_answer_feed must be one of {EVAL_ANSWER_FEEDS}, got {self.eval_answer_feed!r}")
        if self.gumbel_tau_start <= 0 or self.gumbel_tau_end <= 0:
            raise ValueError(f"Gumbel temperatures must be positive, got {self.gumbel_tau_start} and {self.gumbel_tau_end}")
        parse_ratio(self.loss_ratio)


def parse_ratio(text: str) -> tuple[float, float]:
    try:
        a, b = (float(x) for x in str(text).split(":"))
    except ValueError:
        raise ValueError(f"loss_ratio must look like '1:1' or '1:4', got {text!r}") from None
    if a < 0 or b < 0 or a + b == 0:
        raise ValueError(f"loss_ratio weights must be non-negative and not both zero, got {text!r}")
    return a, b
