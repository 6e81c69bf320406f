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


import hf_vcr  # noqa: F401
from hf_vcr.data.vcr import tokenize_view
from hf_vcr.model_card import train_command, write_model_card
from hf_vcr.trainers.coupling_data import stage_args
from hf_vcr.predict.vcr import write_vcr_predictions
from hf_vcr.trainers.vcr_components import build_collator, build_model, build_tokenizer, card_datasets, prepare_splits
from hf_vcr.trainers.vcr_config import VcrDataArguments, VcrModelArguments, VcrTrainingConfig
from hf_vcr.trainers.vcr_trainer import VcrTrainer, evaluate_q2ar, multiple_choice_accuracy
from hf_vcr.utils.checkpoints import atomic_write_json
from hf_vcr.flows import run_script
from hf_vcr.utils.config_parsing import make_parser as _make_parser
from hf_vcr.flows.common import finish, flow_main
from hf_vcr.utils.runtime import announce_run
from transformers import set_seed

TASK_NAMES = {"q2a": "Q→A", "qa2r": "QA→R", "qr2a": "QR→A"}
DONE = "training_complete"


def train_task(task, model_args, data_args, args, tokenizer, train, evaluation, argv=None):
    task_args = stage_args(args, output_dir=os.path.join(args.output_dir, task),
                           hub_model_id=f"{args.hub_model_id}-{task}" if args.hub_model_id else None)
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
    announce_run(trainer, task)
    done = os.path.join(task_args.output_dir, DONE)
    if os.path.isfile(done):  # finished earlier: reuse it (and push it, if the earlier push failed)
        trainer.model = type(model).from_pretrained(task_args.output_dir)
        trainer.model_wrapped = trainer.model
        with open(done) as f:
            metrics = json.load(f)
    else:
        card = card_datasets(train, evaluation, data_args.train_split, data_args.eval_split)
        metrics = train_and_save(trainer, task, task_args, args, card, done, argv)
    if args.push_to_hub:
        trainer.push_to_hub(commit_message=f"{TASK_NAMES[task]} model trained with hf_vcr")
    return trainer, metrics


def train_and_save(trainer, task, task_args, args, card, done, argv=None):
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
            **card,
            hyperparameters={k: getattr(args, k) for k in ("learning_rate", "num_train_epochs", "max_steps",
                             "per_device_train_batch_size", "gradient_accumulation_steps", "seed", "warmup_steps")},
            metrics={"accuracy": metrics.get("eval_accuracy")},
            load_path=task_args.hub_model_id or task_args.output_dir,
            train_command=train_command("train_vcr.py", argv),
        )
        atomic_write_json(done, metrics)
    return metrics


PROG = "hf-vcr train vcr"
ARGUMENTS = (VcrModelArguments, VcrDataArguments, VcrTrainingConfig)


def make_parser(prog: str | None = PROG):
    """The parser of this flow: ``--help`` lists every field of VcrModelArguments, VcrDataArguments, VcrTrainingConfig."""
    return _make_parser(ARGUMENTS, prog=prog)


def run(model_args, data_args, args, argv=None) -> dict:
    """The whole flow on parsed arguments (``main`` parses, guards the output folder and marks the run complete)."""
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
            write_vcr_predictions(os.path.join(args.output_dir, "val_predictions.csv"), evaluation["annot_id"], answer_logits, rationale_logits)
            finish(args, {**metrics, "eval_file": eval_path}, "metrics.json")
    else:  # a single task (or Q→A without QA→R): its validation accuracy, in percent like Q→AR
        metrics = {task: float(results[task]["eval_accuracy"]) for task in tasks}
        if args.process_index == 0:
            finish(args, {**metrics, "eval_file": eval_path}, "metrics.json")
    return metrics


def pushed(args) -> list[tuple[str, str | None]]:
    """Each task's model, as HUB_MODEL_ID-<task>."""
    return [(os.path.join(args.output_dir, task), task) for task in (t.strip() for t in args.tasks.split(",")) if task]


main = flow_main(ARGUMENTS, PROG, run, pushed)

if __name__ == "__main__":
    run_script(main)
