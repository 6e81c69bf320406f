#!/usr/bin/env python
"""Train a Pythia-style VQA model with SOrT (Sub-question Oriented Tuning) on VQA-Introspect.

    python scripts/train_sort.py scripts/configs/sort_synthetic.yaml [--field value ...]
    accelerate launch --multi_gpu --num_processes 2 scripts/train_sort.py scripts/configs/sort_synthetic.yaml
    torchrun --standalone --nproc_per_node 2 scripts/train_sort.py scripts/configs/sort_synthetic.yaml

Real data: ``--train_introspect VQAIntrospect_trainv1.0.json --train_vqa_questions
v2_OpenEnded_mscoco_train2014_questions.json --train_vqa_annotations v2_mscoco_train2014_annotations.json``
(and the ``eval_*`` counterparts), ``--region_features DIR_OR_H5`` and ``--tokenizer_name``.
``--sort_mode none`` trains the BCE-only baseline with the same weights and schedule.

The last line printed is a JSON object of the evaluation metrics.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict, dataclass, field

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402
from accelerate import PartialState  # noqa: E402

from hf_vcr.data.region_features import RegionFeatureReader  # noqa: E402
from hf_vcr.data.vqa_introspect import SortCollator, build_answer_vocab, load_vqa_introspect, tokenize_sort_examples  # noqa: E402
from hf_vcr.models.modeling_vqa import VqaConfig, VqaForClassification  # noqa: E402
from hf_vcr.trainers.sort_config import SortConfig  # noqa: E402
from hf_vcr.trainers.sort_trainer import SortTrainer  # noqa: E402
from hf_vcr.utils.checkpoints import atomic_write_json, atomic_write_text, save_pretrained_atomic  # noqa: E402
from hf_vcr.utils.config_parsing import parse_config  # noqa: E402


@dataclass
class SortModelArguments:
    model_name_or_path: str | None = field(default=None, metadata={"help": "Start from a saved VqaForClassification (e.g. a BCE-trained Pythia)."})
    tokenizer_name: str | None = field(default=None, metadata={"help": "Tokenizer name or path; default: a word-level tokenizer built from the questions."})
    question_encoder: str = field(default="gru", metadata={"help": "'gru' or 'transformer' (a BERT-style encoder from text_config)."})
    text_config: str | None = field(default=None, metadata={"help": "JSON of a transformers text config (question_encoder=transformer), e.g. a tiny BertConfig."})
    word_embedding_dim: int = field(default=300, metadata={"help": "GRU encoder word embedding size."})
    question_hidden_size: int = field(default=1024, metadata={"help": "GRU encoder hidden size."})
    hidden_size: int = field(default=5000, metadata={"help": "Fusion size (= Grad-CAM vector size)."})
    attention_hidden_size: int = field(default=512, metadata={"help": "Question-guided attention hidden size."})
    classifier_hidden_size: int = field(default=10000, metadata={"help": "Classifier hidden size."})
    dropout: float = field(default=0.1, metadata={"help": "Dropout in attention and classifier."})


@dataclass
class SortDataArguments:
    synthetic: bool = field(default=False, metadata={"help": "Generate and use the embedded synthetic VQA-Introspect set."})
    synthetic_dir: str | None = field(default=None, metadata={"help": "Where the synthetic files go (default: OUTPUT_DIR/synthetic_data)."})
    synthetic_train_items: int = field(default=1500, metadata={"help": "Synthetic train <image, reasoning question> items."})
    synthetic_eval_items: int = field(default=300, metadata={"help": "Synthetic eval items."})
    synthetic_seed: int = field(default=0, metadata={"help": "Seed of the synthetic data."})
    synthetic_concepts: int | None = field(default=None, metadata={"help": "Use only the first N reasoning concepts (default: all 12)."})
    synthetic_noise: float = field(default=0.5, metadata={"help": "Std of the noise added to the synthetic region features."})
    train_introspect: str | None = field(default=None, metadata={"help": "VQAIntrospect_trainv1.0.json"})
    train_vqa_questions: str | None = field(default=None, metadata={"help": "v2_OpenEnded_mscoco_train2014_questions.json (irrelevant questions)"})
    train_vqa_annotations: str | None = field(default=None, metadata={"help": "v2_mscoco_train2014_annotations.json"})
    eval_introspect: str | None = field(default=None, metadata={"help": "VQAIntrospect_valv1.0.json"})
    eval_vqa_questions: str | None = field(default=None, metadata={"help": "v2_OpenEnded_mscoco_val2014_questions.json"})
    eval_vqa_annotations: str | None = field(default=None, metadata={"help": "v2_mscoco_val2014_annotations.json"})
    region_features: str | None = field(default=None, metadata={"help": "Directory of <image_id>.npy/.npz, or one .h5 (ids, features[, boxes])."})
    max_train_items: int | None = field(default=None, metadata={"help": "Use only the first N training items (debugging)."})
    max_eval_items: int | None = field(default=None, metadata={"help": "Use only the first N evaluation items."})
    max_sub_questions: int | None = field(default=None, metadata={"help": "Keep at most this many sub-questions per item."})
    max_irrelevant_questions: int | None = field(default=8, metadata={"help": "Keep at most this many irrelevant questions per item."})
    max_question_length: int = field(default=24, metadata={"help": "Question token limit."})
    max_answers: int | None = field(default=3129, metadata={"help": "Answer vocabulary size (most frequent answers)."})
    evaluate_before_training: bool = field(default=False, metadata={"help": "Also evaluate the initial model."})


def build(model_args: SortModelArguments, data_args: SortDataArguments, args: SortConfig):
    state = PartialState()
    if data_args.synthetic:
        from hf_vcr.data.synthetic_introspect import synthetic_introspect_files, write_synthetic_introspect

        out = data_args.synthetic_dir or os.path.join(args.output_dir, "synthetic_data")
        with state.main_process_first():
            if state.is_main_process:
                write_synthetic_introspect(
                    out, n_train=data_args.synthetic_train_items, n_eval=data_args.synthetic_eval_items, seed=data_args.synthetic_seed,
                    n_concepts=data_args.synthetic_concepts, noise=data_args.synthetic_noise,
                )
        tr, ev = synthetic_introspect_files(out, "train"), synthetic_introspect_files(out, "eval")
        data_args.train_introspect, data_args.train_vqa_questions, data_args.train_vqa_annotations = tr["introspect_json"], tr["vqa_questions"], tr["vqa_annotations"]
        data_args.eval_introspect, data_args.eval_vqa_questions, data_args.eval_vqa_annotations = ev["introspect_json"], ev["vqa_questions"], ev["vqa_annotations"]
        data_args.region_features = tr["region_features"]
    if not data_args.train_introspect or not data_args.region_features:
        raise ValueError("pass --synthetic true, or --train_introspect and --region_features")
    with state.main_process_first():
        train = load_vqa_introspect(data_args.train_introspect, data_args.train_vqa_questions, data_args.train_vqa_annotations)
        evals = (
            load_vqa_introspect(data_args.eval_introspect, data_args.eval_vqa_questions, data_args.eval_vqa_annotations)
            if data_args.eval_introspect
            else None
        )
    if data_args.max_train_items is not None:
        train = train.select(range(min(data_args.max_train_items, len(train))))
    if evals is not None and data_args.max_eval_items is not None:
        evals = evals.select(range(min(data_args.max_eval_items, len(evals))))
    reader = RegionFeatureReader(data_args.region_features)
    missing = [i for i in set(train["image_id"]) | set(evals["image_id"] if evals is not None else []) if i not in reader]
    if missing:
        raise FileNotFoundError(f"{data_args.region_features}: no region features for {len(missing)} images, e.g. {sorted(missing)[:5]}")

    if model_args.model_name_or_path:
        model = VqaForClassification.from_pretrained(model_args.model_name_or_path)
        vocab = [model.config.id2label[i] for i in range(model.config.num_labels)]
    else:
        vocab = build_answer_vocab(train, max_answers=data_args.max_answers)
    label2id = {a: i for i, a in enumerate(vocab)}

    if model_args.tokenizer_name or model_args.model_name_or_path and os.path.isfile(os.path.join(model_args.model_name_or_path, "tokenizer.json")):
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(model_args.tokenizer_name or model_args.model_name_or_path)
    else:
        from hf_vcr.data.tokenization import build_word_tokenizer

        texts = []
        for ds in [train] + ([evals] if evals is not None else []):
            texts += list(ds["reasoning_question"]) + [q for qs in ds["sub_questions"] for q in qs] + [q for qs in ds["irrelevant_questions"] for q in qs]
        tokenizer = build_word_tokenizer(texts)

    if not model_args.model_name_or_path:
        text_config = None
        if model_args.question_encoder == "transformer":
            text_config = json.loads(model_args.text_config) if model_args.text_config else {
                "model_type": "bert", "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 128,
            }
            text_config.setdefault("vocab_size", len(tokenizer))
        config = VqaConfig(
            vocab_size=len(tokenizer),
            pad_token_id=tokenizer.pad_token_id,
            question_encoder=model_args.question_encoder,
            text_config=text_config,
            word_embedding_dim=model_args.word_embedding_dim,
            question_hidden_size=model_args.question_hidden_size,
            image_feature_dim=int(reader[reader.image_ids()[0]]["features"].shape[1]),
            hidden_size=model_args.hidden_size,
            attention_hidden_size=model_args.attention_hidden_size,
            classifier_hidden_size=model_args.classifier_hidden_size,
            dropout=model_args.dropout,
            id2label=dict(enumerate(vocab)),
            label2id=label2id,
        )
        torch.manual_seed(args.seed)
        model = VqaForClassification(config)

    def prep(ds):
        return tokenize_sort_examples(
            ds, tokenizer, label2id, data_args.max_sub_questions, data_args.max_irrelevant_questions, data_args.max_question_length
        )

    with state.main_process_first():
        train = prep(train)
        evals = prep(evals) if evals is not None else None
    collator = SortCollator(reader, num_labels=len(vocab), pad_token_id=tokenizer.pad_token_id)
    trainer = SortTrainer(model=model, args=args, train_dataset=train, eval_dataset=evals, data_collator=collator, processing_class=tokenizer)
    return trainer, tokenizer


def write_eval_files(records: list[dict], output_dir: str) -> None:
    """The inputs of ``hf-vcr evaluate ranking`` / ``hf-vcr evaluate consistency``."""
    atomic_write_text(
        os.path.join(output_dir, "ranking_scores.jsonl"),
        "".join(json.dumps({"id": i, "scores": r["scores"], "relevant": r["relevant"]}) + "\n" for i, r in enumerate(records) if 1 in r["relevant"] and 0 in r["relevant"]),
    )
    atomic_write_text(
        os.path.join(output_dir, "consistency_predictions.jsonl"),
        "".join(
            json.dumps({"id": i, "reasoning_correct": r["reasoning_correct"], "sub_correct": r["sub_correct"]}) + "\n"
            for i, r in enumerate(records)
        ),
    )


def main(argv=None) -> dict:
    model_args, data_args, args = parse_config([SortModelArguments, SortDataArguments, SortConfig], argv)
    trainer, tokenizer = build(model_args, data_args, args)
    results: dict = {}
    if data_args.evaluate_before_training and trainer.eval_dataset is not None:
        results.update({f"initial_{k}": v for k, v in trainer.sort_metrics(trainer.predict_sort()).items()})
    if args.do_train or not args.do_eval:
        trainer.train_resuming()
    if trainer.eval_dataset is not None:
        records = trainer.predict_sort()
        results.update(trainer.sort_metrics(records))
        if trainer.is_world_process_zero():
            write_eval_files(records, args.output_dir)
    if trainer.is_world_process_zero():
        final = os.path.join(args.output_dir, "final")
        save_pretrained_atomic(trainer.model, final)
        tokenizer.save_pretrained(final)
        atomic_write_json(os.path.join(args.output_dir, "sort_results.json"), results)
        try:
            from hf_vcr.model_card import train_command, write_model_card

            write_model_card(
                final,
                model_name=os.path.basename(os.path.abspath(args.output_dir)),
                method="SOrT",
                method_summary="Sub-question Oriented Tuning: Grad-CAM vectors of a reasoning question are pulled toward those of its "
                "sub-questions and pushed from those of irrelevant questions (contrastive gradient loss).",
                paper_title="SOrT-ing VQA Models: Contrastive Gradient Learning for Improved Consistency",
                paper_url="https://aclanthology.org/2021.naacl-main.248",
                architecture="VqaForClassification (Pythia-style)",
                task_type="visual-question-answering",
                dataset_name="synthetic VQA-Introspect" if data_args.synthetic else "VQA-Introspect + VQAv2",
                train_command=train_command("train_sort.py", argv),
                hyperparameters={k: v for k, v in asdict(args).items() if k in ("sort_mode", "lambda_reasoning", "lambda_sub", "lambda_irrelevant", "learning_rate", "max_steps", "per_device_train_batch_size", "seed")},
                metrics={k: v for k, v in results.items() if not k.startswith("initial_")},
                load_path=args.hub_model_id or final,
            )
        except Exception as e:  # noqa: BLE001  (a card is a nicety; never lose a trained model over it)
            print(f"warning: model card not written: {e}", file=sys.stderr)
        if args.push_to_hub:  # the final model with its card
            from hf_vcr.hub import push_trained_model

            push_trained_model(args, final, commit_message="SOrT model trained with hf_vcr")
        # NaN (e.g. consistency when no reasoning question is answered right) prints as null
        print(json.dumps({k: (None if v != v else round(v, 4)) if isinstance(v, float) else v for k, v in results.items()}))
    return results


if __name__ == "__main__":
    from hf_vcr.utils.distributed import end_distributed

    main()
    end_distributed()
