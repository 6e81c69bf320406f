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


def build_model(model_args, tokenizer: PreTrainedTokenizerBase) -> VcrForMultipleChoice:
    if model_args.model_name_or_path:
        return VcrForMultipleChoice.from_pretrained(model_args.model_name_or_path)
    size = (model_args.image_size, model_args.image_size)
    if model_args.text_encoder is None and model_args.tiny:
        config = VcrConfig.tiny(vocab_size=len(tokenizer), visual_source=model_args.visual_source, image_size=size)
    else:
        from transformers import AutoConfig

        config = VcrConfig(
            text_config=AutoConfig.from_pretrained(model_args.text_encoder),
            vision_config=AutoConfig.from_pretrained(model_args.vision_backbone) if model_args.vision_backbone else None,
            visual_source=model_args.visual_source,
            image_size=size,
        )
    if model_args.dropout is not None:
        config.set_dropout(model_args.dropout)
    model = VcrForMultipleChoice(config)
    if model_args.text_encoder:
        model.load_text_encoder(model_args.text_encoder)
    if model_args.vision_backbone:
        model.load_vision_backbone(model_args.vision_backbone)
    return model


def build_collator(model, tokenizer, model_args) -> VcrCollator:
    return VcrCollator.for_model(model.config, pad_token_id=tokenizer.pad_token_id or 0, region_features_dir=model_args.region_features_dir)
