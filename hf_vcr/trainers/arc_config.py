"""Configuration of :class:`~hf_vcr.trainers.arc_trainer.ArcTrainer` and ``scripts/train_arc.py`` (ARC, Algorithm 1)."""

from __future__ import annotations

from dataclasses import dataclass, field


from .training_args import HfVcrTrainingArguments


@dataclass
class ArcConfig(HfVcrTrainingArguments):
    """Stage 2 uses the ordinary ``TrainingArguments`` fields; stage 1 (the QR→A teacher) the ``teacher_*`` ones."""

    backbone: str = field(
        default="vcr",
        metadata={"help": "Scorer used for f_A, f_R and f_C: 'vcr' (hf_vcr VcrForMultipleChoice) or 'visualbert' "
                          "(transformers VisualBertForMultipleChoice through hf_vcr's adapter)."},
    )
    alpha: float = field(default=0.1, metadata={"help": "α of eq. 12: weight of KD-A in L_Q→A (released: 0.1)."})
    beta: float = field(default=0.1, metadata={"help": "β of eq. 13: weight of KD-R in L_QA→R (released: 0.1)."})
    kd_temperature: float = field(
        default=2.0, metadata={"help": "T of eq. 7-8 (the paper asks T > 1; the released code uses 20 with kd_scale_by_t2)."}
    )
    kd_scale_by_t2: bool = field(
        default=False, metadata={"help": "Multiply KD-A by T² as the released code does (eq. 9 itself has no factor)."}
    )
    kd_r_variant: str = field(
        default="paper",
        metadata={"help": "KD-R: 'paper' (eq. 10-11, s_i = h_C · h_R_i and cross entropy with the rationale label) or "
                          "'released' (SDLZY/ARC InfoNCEEmbLoss_2: a Linear + L2 normalisation per side, CE of f_C's four "
                          "answer features against f_R's detached right rationale (answer label) plus CE of f_R's four "
                          "rationale features against f_C's detached right answer (rationale label)).",
                  "choices": ["paper", "released"]},
    )
    kd_r_temperature: float = field(
        default=1.0, metadata={"help": "Temperature of the 'released' KD-R cosine scores (released: temperature_infonce = 1)."}
    )
    kd_r_projection_dim: int = field(
        default=0, metadata={"help": "Output width of the two 'released' KD-R projections (0: f_R's hidden size; released: "
                                     "1536 -> 1536, the width of its features)."}
    )
    teacher_mode: str = field(
        default="cached",
        metadata={"help": "'cached': f_C's logits and features are computed once for the training set and read from "
                          "<output_dir>/teacher_cache; 'live': the frozen f_C runs every step (same loss, slower)."},
    )
    teacher_num_train_epochs: float = field(
        default=10.0, metadata={"help": "Stage 1: most epochs of QR→A training (eq. 15); early stopping usually ends it sooner."}
    )
    teacher_max_steps: int = field(default=-1, metadata={"help": "Stage 1: stop after this many steps (-1: no limit)."})
    teacher_learning_rate: float | None = field(default=None, metadata={"help": "Stage 1 learning rate (default: learning_rate)."})
    teacher_eval_steps: int | None = field(
        default=None, metadata={"help": "Stage 1: evaluate (and checkpoint) every N steps; None: every epoch."}
    )
    teacher_patience: int = field(
        default=2, metadata={"help": "Stage 1 stops after this many evaluations without a lower validation loss."}
    )
    teacher_early_stopping_threshold: float = field(
        default=0.0, metadata={"help": "Smallest decrease of the validation loss that counts as an improvement."}
    )
    remove_unused_columns: bool = field(
        default=False, metadata={"help": "Keep every view's columns: the collator, not the model, consumes them."}
    )

    def __post_init__(self):
        super().__post_init__()
        if self.backbone not in ("vcr", "visualbert"):
            raise ValueError(f"backbone must be 'vcr' or 'visualbert', got {self.backbone!r}")
        if self.kd_r_variant not in ("paper", "released"):
            raise ValueError(f"kd_r_variant must be 'paper' or 'released', got {self.kd_r_variant!r}")
        if self.teacher_mode not in ("cached", "live"):
            raise ValueError(f"teacher_mode must be 'cached' or 'live', got {self.teacher_mode!r}")
        if not (0.0 <= self.alpha <= 1.0 and 0.0 <= self.beta <= 1.0):
            raise ValueError(f"alpha and beta must lie in [0, 1], got {self.alpha}, {self.beta}")
        if self.kd_temperature <= 0:
            raise ValueError(f"kd_temperature must be positive, got {self.kd_temperature}")
        if self.kd_r_temperature <= 0:
            raise ValueError(f"kd_r_temperature must be positive, got {self.kd_r_temperature}")
        if self.kd_r_projection_dim < 0:
            raise ValueError(f"kd_r_projection_dim must be 0 (f_R's hidden size) or positive, got {self.kd_r_projection_dim}")
