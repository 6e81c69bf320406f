"""Train a VideoQA model with EIGV (Equivariant and Invariant Grounding, Li et al., ACM MM 2022).

    python scripts/train_eigv.py scripts/configs/eigv_synthetic.yaml [--field value ...]
    python scripts/train_eigv.py scripts/configs/eigv_synthetic.yaml --objective erm --output_dir runs/erm_synthetic
    accelerate launch --multi_gpu --num_processes 2 scripts/train_eigv.py scripts/configs/eigv_synthetic.yaml
    torchrun --standalone --nproc_per_node 2 scripts/train_eigv.py scripts/configs/eigv_synthetic.yaml

Datasets (``--dataset``):

* ``synthetic``: the embedded NExT-QA-layout set (``hf_vcr.data.synthetic_videoqa``), generated under
  ``--data_dir``; its known causal clips are scored against the grounded masks.
* ``nextqa``: ``--train_file train.csv --validation_file val.csv --train_features vid_feat/app_mot_train.h5
  --validation_features vid_feat/app_mot_val.h5 --tokenizer_name bert-base-uncased --text_encoder bert-base-uncased``.
* ``msvd_qa`` / ``msrvtt_qa``: ``--train_file train_qa.json --validation_file val_qa.json
  --train_features APP.h5,MOT.h5 --validation_features APP.h5,MOT.h5 --answer_top_k 1000`` (or ``--answer_set answer_set.txt``).

Writes ``OUTPUT_DIR/final`` (safetensors + config + tokenizer + model card), ``predictions.json`` (the NExT-QA
official format for multiple choice; question id -> answer otherwise), ``metrics.json`` and
``causal_masks.png``. The last line printed is a JSON object of the evaluation metrics.
"""

from __future__ import annotations

import json
import os


import numpy as np
import torch
from accelerate import PartialState

from hf_vcr.data.videoqa import (
    check_clip_features,
    ClipFeatureStore,
    VideoQaCollator,
    build_answer_vocab,
    load_nextqa,
    load_open_ended_qa,
    read_answer_set,
    read_open_ended_qa,
)
from hf_vcr.metrics.videoqa import grounding_overlap, nextqa_accuracies, open_ended_accuracies
from hf_vcr.models.configuration_videoqa import TINY_TEXT_CONFIG, VideoQaConfig
from hf_vcr.models.modeling_videoqa import VideoQaForClassification, VideoQaForMultipleChoice
from hf_vcr.trainers.eigv_config import EigvConfig, EigvDataArguments, EigvModelArguments
from hf_vcr.trainers.eigv_trainer import EigvTrainer
from hf_vcr.utils.checkpoints import atomic_write_json
from hf_vcr.flows import run_script
from hf_vcr.utils.config_parsing import make_parser as _make_parser
from hf_vcr.flows.common import finish, flow_main, save_final
from hf_vcr.predict.eigv import prediction_records
from hf_vcr.utils.runtime import announce_run


def _features(spec: str) -> ClipFeatureStore:
    parts = [p for p in spec.split(",") if p]
    if len(parts) == 1:
        return ClipFeatureStore.nextqa(parts[0])
    if len(parts) == 2:
        return ClipFeatureStore.appearance_motion(parts[0], parts[1])
    raise ValueError(f"features must be one h5 path (NExT-QA) or APP.h5,MOT.h5, got {spec!r}")


def build(model_args: EigvModelArguments, data_args: EigvDataArguments, args: EigvConfig):
    true_clips = None
    if data_args.dataset == "synthetic":
        from hf_vcr.data.synthetic_videoqa import load_causal_clips, make_synthetic_videoqa

        data_dir = data_args.data_dir or os.path.join(args.output_dir, "synthetic_data")
        with PartialState().main_process_first():
            make_synthetic_videoqa(
                data_dir,
                seed=data_args.synthetic_seed,
                num_train=data_args.synthetic_train,
                num_val=data_args.synthetic_val,
                num_clips=data_args.synthetic_clips,
                feature_dim=data_args.synthetic_feature_dim,
                noise=data_args.synthetic_noise,
                spurious=data_args.synthetic_spurious,
            )
        data_args.train_file = os.path.join(data_dir, "train.csv")
        data_args.validation_file = os.path.join(data_dir, "val.csv")
        data_args.train_features = os.path.join(data_dir, "vid_feat", "app_mot_train.h5")
        data_args.validation_features = os.path.join(data_dir, "vid_feat", "app_mot_val.h5")
        true_clips = load_causal_clips(os.path.join(data_dir, "causal_clips_val.json"))
        kind = "nextqa"
    else:
        kind = data_args.dataset
    if kind not in ("nextqa", "msvd_qa", "msrvtt_qa"):
        raise ValueError(f"unknown dataset {data_args.dataset!r}")
    for name in ("train_file", "validation_file", "train_features", "validation_features"):
        if not getattr(data_args, name):
            raise ValueError(f"--{name} is required for dataset {kind!r}")
    train_store, val_store = _features(data_args.train_features), _features(data_args.validation_features)
    multiple_choice = kind == "nextqa"
    answer_vocab = None
    with PartialState().main_process_first():
        if multiple_choice:
            train_ds = load_nextqa(data_args.train_file, features=train_store)
            val_ds = load_nextqa(data_args.validation_file, features=val_store)
        else:
            if data_args.answer_set:
                answer_vocab = read_answer_set(data_args.answer_set)
            else:
                answer_vocab = build_answer_vocab((r["answer"] for r in read_open_ended_qa(data_args.train_file)), data_args.answer_top_k)
            train_ds = load_open_ended_qa(data_args.train_file, answer_vocab, features=train_store, drop_unknown_answers=True)
            val_ds = load_open_ended_qa(data_args.validation_file, answer_vocab, features=val_store)
    if data_args.max_eval_samples:
        val_ds = val_ds.select(range(min(data_args.max_eval_samples, len(val_ds))))

    if model_args.tokenizer_name:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(model_args.tokenizer_name)
    else:
        from hf_vcr.data.tokenization import build_word_tokenizer

        texts = list(train_ds["question"]) + list(val_ds["question"])
        if multiple_choice:
            texts += [o for opts in train_ds["options"] for o in opts] + [o for opts in val_ds["options"] for o in opts]
        tokenizer = build_word_tokenizer(texts)

    model_cls = VideoQaForMultipleChoice if multiple_choice else VideoQaForClassification
    if model_args.model_name_or_path:
        model = model_cls.from_pretrained(model_args.model_name_or_path)
        for key in ("gumbel_tau", "gumbel_logits"):  # the grounding indicator's sampling may change on a warm start
            if getattr(model_args, key) is not None:
                setattr(model.config, key, getattr(model_args, key))
    else:
        if model_args.text_encoder:
            from transformers import AutoConfig

            text_config = AutoConfig.from_pretrained(model_args.text_encoder)
        else:
            text_config = dict(TINY_TEXT_CONFIG, **(json.loads(model_args.text_config) if model_args.text_config else {}))
            text_config["vocab_size"] = max(text_config.get("vocab_size", 0), len(tokenizer))
        config = VideoQaConfig(
            text_config=text_config,
            visual_dim=train_store.dim,
            num_clips=train_store.num_clips,
            hidden_size=model_args.hidden_size,
            num_fusion_layers=model_args.num_fusion_layers,
            num_attention_heads=model_args.num_attention_heads,
            intermediate_size=model_args.intermediate_size,
            dropout=model_args.dropout,
            num_choices=5,
            num_answers=len(answer_vocab) if answer_vocab else 1,
            gumbel_tau=1.0 if model_args.gumbel_tau is None else model_args.gumbel_tau,
            gumbel_logits=model_args.gumbel_logits or "probabilities",
            id2label={i: a for i, a in enumerate(answer_vocab)} if answer_vocab else None,
        )
        torch.manual_seed(args.seed)
        model = model_cls(config)
        if model_args.text_encoder:
            from transformers import AutoModel

            model.videoqa.text_encoder = AutoModel.from_pretrained(model_args.text_encoder)
    # width, clip count and finite values of both feature files, before any training (scan_values: one read of each)
    check_clip_features({"train": train_store, "validation": val_store}, visual_dim=model.config.visual_dim,
                        num_clips=model.config.num_clips, scan_values=data_args.dataset == "synthetic")
    trainer = EigvTrainer(
        model=model,
        args=args,
        train_dataset=train_ds,
        eval_dataset=val_ds,
        data_collator=VideoQaCollator(tokenizer, train_store, max_length=data_args.max_length),
        processing_class=tokenizer,
    )
    ctx = {
        "tokenizer": tokenizer,
        "val_collator": VideoQaCollator(tokenizer, val_store, max_length=data_args.max_length),
        "val_ds": val_ds,
        "multiple_choice": multiple_choice,
        "answer_vocab": answer_vocab,
        "true_clips": true_clips,
    }
    return trainer, ctx


def evaluate_model(trainer: EigvTrainer, ctx: dict, output_dir: str, num_examples: int = 8) -> dict:
    """Predict on the validation set (gathered without duplicates), score it and write the prediction files."""
    collator, drop_last = trainer.data_collator, trainer.args.dataloader_drop_last
    trainer.data_collator = ctx["val_collator"]
    trainer.args.dataloader_drop_last = False  # every validation question is scored
    try:
        out = trainer.predict(ctx["val_ds"])
    finally:
        trainer.data_collator, trainer.args.dataloader_drop_last = collator, drop_last
    logits, _, causal_mask, causal_probs = out.predictions
    pred = np.asarray(logits).argmax(-1)
    ds = ctx["val_ds"]
    predictions = prediction_records(ds["key"], pred, ctx["multiple_choice"], ds["answer"] if ctx["multiple_choice"] else None, ctx["answer_vocab"])
    if ctx["multiple_choice"]:
        metrics = nextqa_accuracies(pred, ds["answer"], ds["type"])
    else:
        metrics = open_ended_accuracies(list(predictions.values()), ds["answer"], ds["question"])
    if ctx["true_clips"] is not None:
        sets = [ctx["true_clips"][k] for k in ds["key"]]
        metrics.update({f"grounding_{k}": v for k, v in grounding_overlap(causal_mask, causal_probs, sets).items()})
    if trainer.is_world_process_zero():
        atomic_write_json(os.path.join(output_dir, "predictions.json"), predictions)
        atomic_write_json(
            os.path.join(output_dir, "causal_masks.json"),
            {k: {"mask": [int(x) for x in m], "probs": [round(float(x), 4) for x in p]} for k, m, p in zip(ds["key"], causal_mask, causal_probs)},
        )
        from hf_vcr.visualization import draw_causal_masks

        examples = []
        for i in range(min(num_examples, len(ds))):
            row = ds[i]
            if ctx["multiple_choice"]:
                title = f"{row['question']}? pred: {row['options'][pred[i]]} | right: {row['options'][row['answer']]}"
            else:
                title = f"{row['question']} pred: {ctx['answer_vocab'][pred[i]]} | right: {row['answer']}"
            examples.append(
                {
                    "title": title,
                    "causal_mask": causal_mask[i],
                    "causal_probs": causal_probs[i],
                    "true_clips": ctx["true_clips"][row["key"]] if ctx["true_clips"] else None,
                }
            )
        draw_causal_masks(os.path.join(output_dir, "causal_masks.png"), examples)
    return metrics


PROG = "hf-vcr train eigv"
ARGUMENTS = (EigvModelArguments, EigvDataArguments, EigvConfig)


def make_parser(prog: str | None = PROG):
    """The parser of this flow: ``--help`` lists every field of EigvModelArguments, EigvDataArguments, EigvConfig."""
    return _make_parser(ARGUMENTS, prog=prog)


def run(model_args, data_args, args, argv=None) -> dict:
    """The whole flow on parsed arguments (``main`` parses, guards the output folder and marks the run complete)."""
    trainer, ctx = build(model_args, data_args, args)
    announce_run(trainer, "eigv")
    trainer.train_resuming()
    metrics = evaluate_model(trainer, ctx, args.output_dir, data_args.num_grounding_examples)
    results = {"objective": args.objective, **{k: v for k, v in metrics.items() if v == v}}
    if trainer.is_world_process_zero():
        save_final(trainer.accelerator.unwrap_model(trainer.model), os.path.join(args.output_dir, "final"), extras=[ctx["tokenizer"]],
                           write_card=lambda folder: write_card(folder, trainer, data_args, args, results, argv))
        finish(args, results, "metrics.json", push=pushed(args), commit_message="EIGV model trained with hf_vcr")
    return results


def write_card(folder, trainer, data_args, args, results, argv=None) -> None:
    from hf_vcr.model_card import train_command, write_model_card

    final = os.path.join(args.output_dir, "final")
    write_model_card(
        folder,
        model_name=os.path.basename(os.path.abspath(args.output_dir)),
        method="EIGV" if args.objective == "eigv" else "ERM",
        method_summary="Equivariant and invariant grounding: a hard Gumbel-softmax split of the clips into causal scene and "
        "environment, interventions on both, ERM on mixed targets plus InfoNCE over disrupted views (eq. 20).",
        paper_title="Equivariant and Invariant Grounding for Interpretable Video Question Answering",
        architecture=type(trainer.model).__name__,
        task_type="video-question-answering",
        dataset_name=data_args.dataset,
        train_command=train_command("train_eigv.py", argv),
        hyperparameters={
            "objective": args.objective,
            "eigv_beta": args.eigv_beta,
            "mix_alpha": args.mix_alpha,
            "num_video_negatives": args.num_video_negatives,
            "num_question_negatives": args.num_question_negatives,
            "memory_bank_size": args.memory_bank_size,
            "erm_warmup_steps": args.erm_warmup_steps,
            "gumbel_tau": trainer.model.config.gumbel_tau,
            "gumbel_logits": trainer.model.config.gumbel_logits,
            "learning_rate": args.learning_rate,
            "max_steps": args.max_steps,
        },
        metrics={k: v for k, v in results.items() if isinstance(v, float)},
        load_path=args.hub_model_id or final,
    )


def pushed(args) -> list[tuple[str, str | None]]:
    """The final model with its card, as HUB_MODEL_ID."""
    return [(os.path.join(args.output_dir, "final"), None)]


main = flow_main(ARGUMENTS, PROG, run, pushed)

if __name__ == "__main__":
    run_script(main)
