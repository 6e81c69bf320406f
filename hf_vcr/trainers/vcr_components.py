"""Building blocks shared by the VCR scripts (train_vcr, train_arc, train_joint):
the splits, the tokenizer, the model and the collator, from the script arguments."""

from __future__ import annotations

import os

from datasets import Dataset
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from ..data.references import GENDER_NEUTRAL_NAMES
from ..data.synthetic_vcr import write_vcr_corpus
from ..data.tokenization import build_word_tokenizer
from ..data.vcr import load_vcr
from ..models import VcrConfig, VcrForMultipleChoice
from ..data.collator import VcrCollator


def prepare_splits(data_args, training_args) -> tuple[Dataset, Dataset, str]:
    """Train and eval splits (generating the embedded corpus when no annotations are given).

    Returns ``(train, eval, eval_jsonl_path)``.
    """
    annotations_dir, images_dir = data_args.annotations_dir, data_args.images_dir
    if annotations_dir is None:
        with training_args.main_process_first(desc="writing the embedded VCR corpus"):
            paths = write_vcr_corpus(data_args.synthetic_dir, n_train=data_args.synthetic_train, n_val=data_args.synthetic_val)
        annotations_dir, images_dir = paths["annotations_dir"], paths["images_dir"]
    with training_args.main_process_first(desc="loading VCR"):
        train = load_vcr(data_args.train_split, annotations_dir, images_dir, cache_dir=data_args.cache_dir)
        evaluation = load_vcr(data_args.eval_split, annotations_dir, images_dir, cache_dir=data_args.cache_dir)
    if data_args.max_train_items:
        train = train.select(range(min(data_args.max_train_items, len(train))))
    if data_args.max_eval_items:
        evaluation = evaluation.select(range(min(data_args.max_eval_items, len(evaluation))))
    split = data_args.eval_split
    eval_path = split if split.endswith(".jsonl") else os.path.join(annotations_dir, f"{split}.jsonl")
    return train, evaluation, eval_path


SYNTHETIC_MOVIE_PREFIX = "synthetic_"  # the embedded corpus' movie folders (hf_vcr.data.synthetic_vcr)


def describe_split(dataset: Dataset | None, split: str) -> str:
    """What a model card says a split is: the embedded synthetic corpus (recognised by its movie folders) or VCR 1.0."""
    if dataset is None:
        return f"VCR-format data, {split} split (not described by the caller)"
    n = len(dataset)
    names = dataset["img_fn"] if "img_fn" in dataset.column_names else []
    if n and names and all(str(name).startswith(SYNTHETIC_MOVIE_PREFIX) for name in names):
        return f"embedded synthetic VCR-layout corpus (hf_vcr, not VCR 1.0), {split} split, {n} items"
    return f"VCR 1.0 {split} ({n} items)"


def card_datasets(train: Dataset | None, evaluation: Dataset | None, train_split: str = "train", eval_split: str = "val") -> dict:
    """``dataset_name`` / ``eval_dataset_name`` for :func:`hf_vcr.model_card.write_model_card`: the data a model was
    really trained and evaluated on, so that a synthetic run never claims VCR scores in its model-index."""
    name = lambda split: os.path.basename(split)[:-6] if split.endswith(".jsonl") else split  # noqa: E731
    return {"dataset_name": describe_split(train, name(train_split)), "eval_dataset_name": describe_split(evaluation, name(eval_split))}


def trained_schedule(output_dir: str, metrics: dict) -> dict:
    """What a run really trained, for its card beside the configured schedule: the epochs of the last stage
    (``metrics["epoch"]``) and, for ARC, the teacher's steps and epochs (``f_C/training_complete``)."""
    import json

    out = {}
    if metrics.get("epoch") is not None:
        out["epochs trained (last stage)"] = round(float(metrics["epoch"]), 2)
    teacher = os.path.join(output_dir, "f_C", "training_complete")
    if os.path.isfile(teacher):
        with open(teacher, encoding="utf-8") as f:
            done = json.load(f)
        out.update({"teacher steps trained": done.get("steps"), "teacher epochs trained": done.get("epochs")})
    return out


def corpus_words(dataset: Dataset) -> list[str]:
    """Every word that rendering can produce for ``dataset`` (for a corpus-built tokenizer)."""
    words = set(GENDER_NEUTRAL_NAMES) | {"and", ",", "[", "]"} | {str(i) for i in range(100)}
    for column in ("question", "objects"):
        for row in dataset[column]:
            words.update(row)
    for column in ("answer_choices", "rationale_choices"):
        for row in dataset[column]:
            for choice in row:
                words.update(choice)
    words.discard("")
    return sorted(words)


def build_tokenizer(model_args, train: Dataset) -> PreTrainedTokenizerBase:
    name = model_args.tokenizer_name or model_args.text_encoder or model_args.model_name_or_path
    if name is not None:
        return AutoTokenizer.from_pretrained(name)
    return build_word_tokenizer([" ".join(corpus_words(train))])


TINY_IMAGE_SIZE = 64


def backbone_image_settings(name_or_path: str) -> dict:
    """What a pretrained vision backbone expects its pixels to be: ``image_size`` (h, w), ``image_mean``, ``image_std``.

    Read from its saved image processor (ResNet: ``shortest_edge`` 224; ViT: ``height``/``width``); without one,
    from its config (ViT's ``image_size``; 224 otherwise, ImageNet's size) with ImageNet statistics.
    """
    from transformers import AutoConfig, AutoImageProcessor

    out: dict = {}
    try:
        processor = AutoImageProcessor.from_pretrained(name_or_path)
    except (OSError, ValueError, KeyError):
        processor = None
    if processor is not None:
        size = dict(getattr(processor, "crop_size", None) or {}) if getattr(processor, "do_center_crop", False) else {}
        size = size or dict(getattr(processor, "size", None) or {})
        if "height" in size and "width" in size:
            out["image_size"] = (int(size["height"]), int(size["width"]))
        elif "shortest_edge" in size:
            out["image_size"] = (int(size["shortest_edge"]),) * 2
        for key in ("image_mean", "image_std"):
            value = getattr(processor, key, None)
            if value is not None:
                out[key] = [float(v) for v in value]
    if "image_size" not in out:
        side = getattr(AutoConfig.from_pretrained(name_or_path), "image_size", None) or 224
        out["image_size"] = tuple(side) if isinstance(side, (list, tuple)) else (int(side), int(side))
    return out


def build_config(model_args, tokenizer: PreTrainedTokenizerBase) -> VcrConfig:
    """The configuration of a new model: each part pretrained when named (``--text_encoder``, ``--vision_backbone``),
    otherwise built from scratch (``tiny``: the small test-size part; else transformers' default size).

    The image size is ``--image_size`` when given; else what the pretrained vision backbone's image processor
    expects; else 64 for a backbone built from scratch. With no pretrained part and ``tiny``, the whole model is
    :meth:`VcrConfig.tiny` (the embedded corpus' model).
    """
    from transformers import AutoConfig

    image = backbone_image_settings(model_args.vision_backbone) if model_args.vision_backbone else {}
    if model_args.image_size:
        image["image_size"] = (model_args.image_size, model_args.image_size)
    image.setdefault("image_size", (TINY_IMAGE_SIZE, TINY_IMAGE_SIZE))
    tiny = VcrConfig.tiny(vocab_size=len(tokenizer), visual_source=model_args.visual_source)
    if model_args.text_encoder is None and model_args.vision_backbone is None and model_args.tiny:
        tiny.image_size = list(image["image_size"])
        return tiny
    if model_args.text_encoder:
        text = AutoConfig.from_pretrained(model_args.text_encoder)
    else:  # the tokenizer is then the corpus-built one: the embeddings must fit its vocabulary
        text = tiny.text_config if model_args.tiny else AutoConfig.for_model("bert", vocab_size=len(tokenizer))
    vision = None
    if model_args.visual_source == "backbone":
        if model_args.vision_backbone:
            vision = AutoConfig.from_pretrained(model_args.vision_backbone)
        else:
            vision = tiny.vision_config if model_args.tiny else AutoConfig.for_model("resnet")
    return VcrConfig(text_config=text, vision_config=vision, visual_source=model_args.visual_source, **image)


def build_model(model_args, tokenizer: PreTrainedTokenizerBase) -> VcrForMultipleChoice:
    """A saved model (``--model_name_or_path``), or a new one from :func:`build_config` with its pretrained parts loaded."""
    if model_args.model_name_or_path:
        return VcrForMultipleChoice.from_pretrained(model_args.model_name_or_path)
    config = build_config(model_args, tokenizer)
    if model_args.dropout is not None:
        config.set_dropout(model_args.dropout)
    model = VcrForMultipleChoice(config)
    if model_args.text_encoder:
        model.load_text_encoder(model_args.text_encoder)
    if model_args.vision_backbone and model_args.visual_source == "backbone":
        model.load_vision_backbone(model_args.vision_backbone)
    return model


def build_collator(model, tokenizer, model_args) -> VcrCollator:
    return VcrCollator.for_model(model.config, pad_token_id=tokenizer.pad_token_id or 0, region_features_dir=model_args.region_features_dir)
