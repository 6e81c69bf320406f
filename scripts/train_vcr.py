#!/usr/bin/env python
"""Train VCR multiple-choice models (Q→A and QA→R by default) and evaluate Q→AR.

    python scripts/train_vcr.py scripts/configs/vcr_synthetic.yaml [--field value ...]
    accelerate launch scripts/train_vcr.py scripts/configs/vcr_synthetic.yaml

Each task's model is written to ``<output_dir>/<task>`` (loadable with
``AutoModel.from_pretrained``, with its tokenizer and model card). A killed run
resumes from its last complete checkpoint; finished tasks are not retrained.
"""

from __future__ import annotations

import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import hf_vcr  # noqa: E402,F401
from hf_vcr.data.vcr import tokenize_view  # noqa: E402
from hf_vcr.metrics.vcr import rounded_json, write_leaderboard_csv  # noqa: E402
from hf_vcr.model_card import train_command, write_model_card  # noqa: E402
from hf_vcr.trainers.vcr_components import build_collator, build_model, build_tokenizer, prepare_splits  # noqa: E402
from hf_vcr.trainers.vcr_config import VcrDataArguments, VcrModelArguments, VcrTrainingConfig  # noqa: E402
from hf_vcr.trainers.vcr_trainer import VcrTrainer, evaluate_q2ar, multiple_choice_accuracy  # noqa: E402
from hf_vcr.utils.checkpoints import atomic_write_json  # noqa: E402
from hf_vcr.utils.config_parsing import parse_config  # noqa: E402

from scipy.special import softmax  # noqa: E402
from transformers import set_seed  # noqa: E402

TASK_NAMES = {"q2a": "Q→A", "qa2r": "QA→R", "qr2a": "QR→A"}
DONE = "training_complete"


def train_task(task, model_args, data_args, args, tokenizer, train, evaluation, argv=None):
    task_args = args.__class__(**{**args.to_dict(), "output_dir": os.path.join(args.output_dir, task)})
    task_args.hub_model_id = f"{args.hub_model_id}-{task}" if args.hub_model_id else None
    set_seed(args.seed)
    model = build_model(model_args, tokenizer)
    kw = dict(max_length=data_args.max_length, reference_style=data_args.reference_style, max_objects=model.config.max_objects)
    with args.main_process_first(desc=f"tokenizing {task}"):
        train_view = tokenize_view(train, tokenizer, task, **kw)
        eval_view = tokenize_view(evaluation, tokenizer, task, **kw)
    trainer = VcrTrainer(
        model=model,
        args=task_args,
        train_dataset=train_view,
        eval_dataset=eval_view,
        data_collator=build_collator(model, tokenizer, model_args),
        processing_class=tokenizer,
        compute_metrics=multiple_choice_accuracy,
    )
    done = os.path.join(task_args.output_dir, DONE)
    if os.path.isfile(done):  # finished earlier: reuse it (and push it, if the earlier push failed)
        trainer.model = type(model).from_pretrained(task_args.output_dir)
        trainer.model_wrapped = trainer.model
        with open(done) as f:
            metrics = json.load(f)
    else:
        metrics = train_and_save(trainer, task, task_args, args, data_args, done, argv)
    if args.push_to_hub:
        trainer.push_to_hub(commit_message=f"{TASK_NAMES[task]} model trained with hf_vcr")
    return trainer, metrics


def train_and_save(trainer, task, task_args, args, data_args, done, argv=None):
    trainer.train_resuming()
    metrics = trainer.evaluate()
    trainer.save_model()
    if trainer.is_world_process_zero():
        write_model_card(
            task_args.output_dir,
            model_name=os.path.basename(os.path.abspath(args.output_dir)) + f"-{task}",
            method=f"VCR {TASK_NAMES[task]}",
            method_summary=f"a multiple-choice scorer for the {TASK_NAMES[task]} task of Visual Commonsense Reasoning.",
            paper_title="From Recognition to Cognition: Visual Commonsense Reasoning (Zellers et al., CVPR 2019)",
            paper_url="https://arxiv.org/abs/1811.10830",
            architecture="VcrForMultipleChoice",
            task_type="multiple-choice",
            dataset_name="VCR (embedded synthetic)" if data_args.annotations_dir is None else "VCR 1.0",
            hyperparameters={k: getattr(args, k) for k in ("learning_rate", "num_train_epochs", "max_steps",
                             "per_device_train_batch_size", "gradient_accumulation_steps", "seed", "warmup_steps")},
            metrics={"accuracy": metrics.get("eval_accuracy")},
            load_path=task_args.hub_model_id or task_args.output_dir,
            train_command=train_command("train_vcr.py", argv),
        )
        atomic_write_json(done, metrics)
    return metrics


def main(argv=None):
    model_args, data_args, args = parse_config([VcrModelArguments, VcrDataArguments, VcrTrainingConfig], argv)
    train, evaluation, eval_path = prepare_splits(data_args, args)
    tokenizer = build_tokenizer(model_args, train)
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    unknown = [t for t in tasks if t not in TASK_NAMES]
    if unknown:
        raise ValueError(f"unknown tasks {unknown}; choose from {sorted(TASK_NAMES)}")
    trainers, results = {}, {}
    for task in tasks:
        trainers[task], results[task] = train_task(task, model_args, data_args, args, tokenizer, train, evaluation, argv)
    if "q2a" in trainers and "qa2r" in trainers:
        kw = dict(max_length=data_args.max_length, reference_style=data_args.reference_style,
                  max_objects=trainers["q2a"].model.config.max_objects)
        q2a_view = tokenize_view(evaluation, tokenizer, "q2a", **kw)
        joint_view = tokenize_view(evaluation, tokenizer, "joint", **kw)
        metrics, answer_logits, rationale_logits = evaluate_q2ar(trainers["q2a"], trainers["qa2r"], q2a_view, joint_view)
        if trainers["q2a"].is_world_process_zero():
            write_leaderboard_csv(
                os.path.join(args.output_dir, "val_predictions.csv"),
                evaluation["annot_id"],
                softmax(answer_logits, axis=-1),
                softmax(rationale_logits, axis=-1),
            )
            atomic_write_json(os.path.join(args.output_dir, "metrics.json"), {**metrics, "eval_file": eval_path})
            print(rounded_json(metrics))
        return metrics
    return results


if __name__ == "__main__":
    from hf_vcr.utils.distributed import end_distributed

    main()
    end_distributed()
