"""Configuration of :class:`~hf_vcr.trainers.vcr_trainer.VcrTrainer` and ``scripts/train_vcr.py``."""

from __future__ import annotations

from dataclasses import dataclass, field

from .training_args import HfVcrTrainingArguments


@dataclass
class VcrModelArguments:
    model_name_or_path: str | None = field(
        default=None, metadata={"help": "A saved VcrForMultipleChoice to start from (directory or Hub id)."}
    )
    text_encoder: str | None = field(
        default=None, metadata={"help": "Pretrained text encoder (e.g. bert-base-uncased); None builds `tiny` from scratch."}
    )
    vision_backbone: str | None = field(
        default=None, metadata={"help": "Pretrained vision backbone, ResNet or ViT (e.g. microsoft/resnet-50); None: built from "
                                         "scratch (see `tiny`). Works with or without --text_encoder."}
    )
    tokenizer_name: str | None = field(
        default=None, metadata={"help": "Tokenizer name or path; default: the text encoder's, else one built from the corpus."}
    )
    tiny: bool = field(
        default=True,
        metadata={"help": "Parts that are not pretrained are built small (VcrConfig.tiny's text encoder / ResNet); "
                          "false: transformers' default sizes (BERT-base, ResNet-50 shapes), randomly initialised."},
    )
    visual_source: str = field(default="backbone", metadata={"help": "backbone | features | none"})
    region_features_dir: str | None = field(
        default=None, metadata={"help": "Directory of <img_fn>.npy region features when visual_source=features."}
    )
    image_size: int | None = field(
        default=None,
        metadata={"help": "Square image size fed to the vision backbone. Default: what --vision_backbone's image "
                          "processor expects (224 for ResNet-50 and ViT-base), else 64 for a backbone built from scratch."},
    )
    dropout: float | None = field(default=None, metadata={"help": "Override every dropout probability of a new model."})


@dataclass
class VcrDataArguments:
    annotations_dir: str | None = field(
        default=None, metadata={"help": "Folder with {train,val}.jsonl; None generates the embedded synthetic corpus."}
    )
    images_dir: str | None = field(default=None, metadata={"help": "The vcr1images folder."})
    synthetic_dir: str = field(default="data/synthetic_vcr", metadata={"help": "Where the embedded corpus is written."})
    synthetic_train: int = field(default=3000, metadata={"help": "Items in the synthetic train split."})
    synthetic_val: int = field(default=600, metadata={"help": "Items in the synthetic val split."})
    train_split: str = field(default="train", metadata={"help": "Training split name (or jsonl path)."})
    eval_split: str = field(default="val", metadata={"help": "Evaluation split name (or jsonl path)."})
    reference_style: str = field(default="r2c", metadata={"help": "Render object references r2c style (names) or as [k] ids: r2c | index."})
    max_length: int = field(default=64, metadata={"help": "Maximum tokens per (query, response) pair."})
    max_train_items: int | None = field(default=None, metadata={"help": "Truncate the training split (debugging)."})
    max_eval_items: int | None = field(default=None, metadata={"help": "Truncate the evaluation split (debugging)."})
    cache_dir: str | None = field(default=None, metadata={"help": "Arrow cache for loaded splits."})


@dataclass
class VcrTrainingConfig(HfVcrTrainingArguments):
    tasks: str = field(
        default="q2a,qa2r",
        metadata={"help": "Comma-separated VCR views to train, one model each (q2a, qa2r, qr2a). With q2a and qa2r, "
                          "evaluation also reports Q→AR using the predicted answers."},
    )
    remove_unused_columns: bool = field(
        default=False, metadata={"help": "Keep image paths and boxes: the collator, not the model, consumes them."}
    )
