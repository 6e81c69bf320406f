"""Training arguments of the LSKD student (Park et al., 2023): Q-Former-only distillation with BLIP-2 stage-1 losses."""

from __future__ import annotations

from dataclasses import dataclass, field

from transformers import TrainingArguments

LSKD_OBJECTIVES = ("stage1", "generative")


@dataclass
class QFormerDistillConfig(TrainingArguments):
    """``TrainingArguments`` + the student objective.

    ``stage1`` trains ``LskdStudentModel`` with ``itc_weight * ITC + itm_weight * ITM + itg_weight * ITG``
    (BLIP-2 sec. 3.2; LSKD uses the discriminative BLIP-2 this way); ``generative`` trains the
    Q-Former of a ``Blip2ForConditionalGeneration`` (language model frozen) on
    ``"Answer: ... Rationale: ..."`` targets. Paper values: lr 1e-5, Adam, linear warm-up + cosine,
    batch 256, 1e4 iterations (discriminative).
    """

    objective: str = field(default="stage1", metadata={"help": "'stage1' (ITC + ITM + ITG student) or 'generative' (BLIP-2 with a frozen LM).", "choices": list(LSKD_OBJECTIVES)})
    itc_weight: float = field(default=1.0, metadata={"help": "Weight of the image-text contrastive loss."})
    itm_weight: float = field(default=1.0, metadata={"help": "Weight of the image-text matching loss (hard negatives)."})
    itg_weight: float = field(default=1.0, metadata={"help": "Weight of the image-grounded text generation loss."})
    itc_label_smoothing: float = field(default=0.1, metadata={"help": "Label smoothing of the ITC cross entropy (BLIP-2 uses 0.1)."})
    itg_label_smoothing: float = field(default=0.1, metadata={"help": "Label smoothing of the ITG cross entropy (BLIP-2 uses 0.1)."})
    augment_regions: bool = field(default=True, metadata={"help": "Re-assign region ids randomly (colours follow ids) and vary the regions shown."})
    with_rationale: bool = field(default=True, metadata={"help": "Text is 'Q Answer: A Rationale: R' (True) or 'Q Answer: A' (False)."})
    cache_vision_outputs: bool = field(
        default=False,
        metadata={"help": "Cache the frozen vision-encoder outputs per example (only valid without region augmentation: the images must not change)."},
    )
    use_lora: bool = field(default=False, metadata={"help": "Train LoRA adapters (PEFT) on the Q-Former attention instead of its full weights."})
    lora_r: int = field(default=8, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=16, metadata={"help": "LoRA alpha."})
    remove_unused_columns: bool = field(default=False, metadata={"help": "Kept False: the collator needs the raw corpus columns."})

    def __post_init__(self):
        if self.objective not in LSKD_OBJECTIVES:
            raise ValueError(f"objective must be one of {LSKD_OBJECTIVES}, got {self.objective!r}")
        if min(self.itc_weight, self.itm_weight, self.itg_weight) < 0:
            raise ValueError("loss weights must be non-negative")
        if self.objective == "stage1" and self.itc_weight + self.itm_weight + self.itg_weight == 0:
            raise ValueError("at least one of itc_weight, itm_weight, itg_weight must be positive")
        if self.cache_vision_outputs and self.augment_regions:
            raise ValueError("cache_vision_outputs needs augment_regions=False: augmented images change every epoch")
        super().__post_init__()
