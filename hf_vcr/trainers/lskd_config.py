"""Training arguments of the LSKD student (Park et al., 2023): Q-Former-only distillation with BLIP-2 stage-1 losses."""

from __future__ import annotations

from dataclasses import dataclass, field


from .training_args import HfVcrTrainingArguments

LSKD_OBJECTIVES = ("stage1", "generative")
REGION_STRATEGIES = ("released", "uniform")  # hf_vcr.data.regions.RegionAugmenter


@dataclass
class QFormerDistillConfig(HfVcrTrainingArguments):
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
    itc_gather_with_grad: bool = field(
        default=False,
        metadata={"help": "ITC negatives from other processes gathered with gradient (open_clip's gather_with_grad). "
                  "False = LAVIS: a no-grad copy, so each similarity trains only the local row's feature."},
    )
    itg_label_smoothing: float = field(default=0.1, metadata={"help": "Label smoothing of the ITG cross entropy (BLIP-2 uses 0.1)."})
    augment_regions: bool = field(
        default=True,
        metadata={"help": "Training-time augmentation of the released data pipeline: regions shown and their ids vary "
                  "(region_strategy), and the rationale is added with probability rationale_probability."},
    )
    region_strategy: str = field(
        default="released",
        metadata={"help": "'released': 1/2 only the mentioned regions, 1/2 the line's region_all, random order, ids 0..n-1 in "
                  "drawing order (LSKD release); 'uniform': mentioned + a uniform number of others, ids drawn from "
                  "range(max_regions).", "choices": list(REGION_STRATEGIES)},
    )
    rationale_probability: float = field(
        default=0.5,
        metadata={"help": "With augment_regions: probability of 'Q Answer: A Rationale: R' (else 'Q Answer: A'); "
                  "released code 0.5. Without augmentation the rationale is always added."},
    )
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
        if self.region_strategy not in REGION_STRATEGIES:
            raise ValueError(f"region_strategy must be one of {REGION_STRATEGIES}, got {self.region_strategy!r}")
        if not 0.0 <= self.rationale_probability <= 1.0:
            raise ValueError(f"rationale_probability must be in [0, 1], got {self.rationale_probability}")
        super().__post_init__()


@dataclass
class LskdModelArguments:
    model_name_or_path: str | None = field(default=None, metadata={"help": "Saved LskdStudentModel / Blip2ForConditionalGeneration directory; default: a tiny random model."})
    tokenizer_name: str | None = field(default=None, metadata={"help": "Tokenizer name or path; default: a word-level tokenizer built from the corpus."})
    image_size: int = field(default=32, metadata={"help": "Image size of the tiny model / image processor."})
    patch_size: int = field(default=8, metadata={"help": "ViT patch size of the tiny model."})
    hidden_size: int = field(default=64, metadata={"help": "Hidden size of the tiny vision encoder and Q-Former."})
    num_query_tokens: int = field(default=8, metadata={"help": "Learned query tokens of the tiny model."})


@dataclass
class LskdDataArguments:
    synthetic: bool = field(default=False, metadata={"help": "Generate and use the embedded localized synthetic set."})
    synthetic_dir: str | None = field(default=None, metadata={"help": "Where the synthetic files go (default: OUTPUT_DIR/synthetic_data)."})
    synthetic_images: int = field(default=1500, metadata={"help": "Synthetic corpus images (one QAR each)."})
    synthetic_mc: int = field(default=200, metadata={"help": "Synthetic multiple-choice evaluation items."})
    synthetic_seed: int = field(default=0, metadata={"help": "Seed of the synthetic data."})
    corpus: str | None = field(default=None, metadata={"help": "LSKD corpus jsonl."})
    images_dir: str | None = field(default=None, metadata={"help": "Root the corpus 'image' paths are relative to."})
    region_file: str | None = field(default=None, metadata={"help": "Optional separate region file (image -> region_locations)."})
    threshold: float | None = field(default=0.8, metadata={"help": "Keep corpus lines whose critic prediction is >= threshold."})
    eval_mc: str | None = field(default=None, metadata={"help": "LSKD-format multiple-choice jsonl for zero-shot evaluation."})
    eval_vcr: str | None = field(default=None, metadata={"help": "Labelled VCR jsonl for zero-shot Q->A, QA->R, Q->AR."})
    vcr_images_dir: str | None = field(default=None, metadata={"help": "vcr1images directory for --eval_vcr."})
    eval_limit: int | None = field(default=None, metadata={"help": "Evaluate on at most this many items."})
    max_length: int = field(default=128, metadata={"help": "Text token limit (paper and released code: 128)."})
    max_regions: int = field(default=8, metadata={"help": "Region ids the 'uniform' region strategy draws new ids from (widened when an image shows more)."})
    evaluate_before_training: bool = field(default=True, metadata={"help": "Also evaluate the initial model (the chance-level reference)."})
