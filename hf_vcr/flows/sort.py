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
from dataclasses import asdict


import torch
from accelerate import PartialState

from hf_vcr.data.region_features import RegionFeatureReader
from hf_vcr.data.vqa_introspect import SortCollator, build_answer_vocab, load_vqa_introspect, tokenize_sort_examples
from hf_vcr.models.modeling_vqa import VqaConfig, VqaForClassification
from hf_vcr.trainers.sort_config import SortConfig, SortDataArguments, SortModelArguments
from hf_vcr.trainers.sort_trainer import SortTrainer
from hf_vcr.utils.checkpoints import atomic_write_text
from hf_vcr.flows import run_script
from hf_vcr.utils.config_parsing import make_parser as _make_parser
from hf_vcr.flows.common import finish, flow_main, save_final
from hf_vcr.utils.runtime import announce_run


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


PROG = "hf-vcr train sort"
ARGUMENTS = (SortModelArguments, SortDataArguments, SortConfig)


def make_parser(prog: str | None = PROG):
    """The parser of this flow: ``--help`` lists every field of SortModelArguments, SortDataArguments, SortConfig."""
    return _make_parser(ARGUMENTS, prog=prog)


def run(model_args, data_args, args, argv=None) -> dict:
    """The whole flow on parsed arguments (``main`` parses, guards the output folder and marks the run complete)."""
    trainer, tokenizer = build(model_args, data_args, args)
    announce_run(trainer, "sort")
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
        save_final(trainer.accelerator.unwrap_model(trainer.model), os.path.join(args.output_dir, "final"), extras=[tokenizer],
                           write_card=lambda folder: write_card(folder, data_args, args, results, argv))
        finish(args, results, "sort_results.json", push=pushed(args), commit_message="SOrT model trained with hf_vcr")
    return results


def write_card(folder, data_args, args, results, argv=None) -> None:
    from hf_vcr.model_card import train_command, write_model_card

    write_model_card(
        folder,
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
        hyperparameters={k: v for k, v in asdict(args).items() if k in ("sort_mode", "lambda_reasoning", "lambda_sub", "lambda_irrelevant", "contrastive_weight", "contrastive_weight_per_answer", "learning_rate", "max_steps", "per_device_train_batch_size", "seed")},
        metrics={k: v for k, v in results.items() if not k.startswith("initial_")},
        load_path=args.hub_model_id or os.path.join(args.output_dir, "final"),
    )


def pushed(args) -> list[tuple[str, str | None]]:
    """The final model with its card, as HUB_MODEL_ID."""
    return [(os.path.join(args.output_dir, "final"), None)]


main = flow_main(ARGUMENTS, PROG, run, pushed)

if __name__ == "__main__":
    run_script(main)
