"""Train the LSKD critic (accept/reject + QA-score and rationale-score regression) on annotated QARs.

    python scripts/train_critic.py scripts/configs/critic_synthetic.yaml [--field value ...]
    accelerate launch --multi_gpu --num_processes 2 scripts/train_critic.py scripts/configs/critic_synthetic.yaml

Real data: ``--synthetic false --train_file critic_train.jsonl --eval_file critic_eval.jsonl --images_dir IMAGES
--model_name_or_path DIR --tokenizer_name bert-base-uncased``. The saved critic (``OUTPUT_DIR/final``) is what
``hf-vcr filter-corpus --critic`` loads. The last line printed is a JSON object of the evaluation metrics.
"""

from __future__ import annotations

import os
from dataclasses import asdict


import torch
from accelerate import PartialState
from transformers.models.blip.image_processing_pil_blip import BlipImageProcessorPil

import hf_vcr  # noqa: F401
from hf_vcr.data.lskd import LskdCollator, load_lskd
from hf_vcr.data.regions import refs_to_text
from hf_vcr.models.configuration_lskd import tiny_critic_config
from hf_vcr.models.modeling_lskd import LskdCriticModel
from hf_vcr.trainers.critic_config import CriticConfig, CriticDataArguments, CriticModelArguments
from hf_vcr.trainers.critic_trainer import CriticTrainer, critic_metrics
from hf_vcr.flows import run_script
from hf_vcr.utils.config_parsing import make_parser as _make_parser
from hf_vcr.flows.common import finish, flow_main, save_final
from hf_vcr.utils.runtime import announce_run


def build(model_args, data_args, args: CriticConfig):
    _ = args.device  # set up the distributed state from TrainingArguments first (e.g. under accelerate launch)
    state = PartialState()
    if data_args.synthetic:
        from hf_vcr.data.synthetic_lskd import write_synthetic_lskd

        out = data_args.synthetic_dir or os.path.join(args.output_dir, "synthetic_data")
        with state.main_process_first():
            if state.is_main_process and not os.path.isfile(os.path.join(out, "critic.jsonl")):
                write_synthetic_lskd(out, n_images=0, n_mc=0, n_critic=data_args.synthetic_items, image_size=model_args.image_size,
                                     seed=data_args.synthetic_seed)
        data_args.images_dir = out
        data_args.train_file = os.path.join(out, "critic.jsonl")
    if not data_args.train_file:
        raise ValueError("pass --synthetic true, or --train_file (with --images_dir)")
    with state.main_process_first():
        train = load_lskd(data_args.train_file, data_args.images_dir, data_args.region_file, threshold=None, require_rationale=args.with_rationale)
        if data_args.eval_file:
            evals = load_lskd(data_args.eval_file, data_args.images_dir, data_args.region_file, threshold=None, require_rationale=args.with_rationale)
        else:
            split = train.train_test_split(test_size=0.2, seed=0)
            train, evals = split["train"], split["test"]

    from transformers import AutoImageProcessor, AutoTokenizer

    src = model_args.model_name_or_path
    if model_args.tokenizer_name or (src and os.path.isfile(os.path.join(src, "tokenizer.json"))):
        tokenizer = AutoTokenizer.from_pretrained(model_args.tokenizer_name or src)
    else:
        from hf_vcr.data.tokenization import build_word_tokenizer

        texts = ["Answer: Rationale: " + " ".join(f"[{i}]" for i in range(16))]
        for ds in (train, evals):
            for rec in ds:
                texts += [refs_to_text(rec[f"{f}_words"], rec[f"{f}_refs"]) for f in ("question", "answer", "rationale")]
        tokenizer = build_word_tokenizer(texts)
    if src and os.path.isfile(os.path.join(src, "preprocessor_config.json")):
        image_processor = AutoImageProcessor.from_pretrained(src)
    else:
        image_processor = BlipImageProcessorPil(size={"height": model_args.image_size, "width": model_args.image_size})
    torch.manual_seed(args.seed)
    if src:
        model = LskdCriticModel.from_pretrained(src)
    else:
        config = tiny_critic_config(vocab_size=len(tokenizer), image_size=model_args.image_size, patch_size=model_args.patch_size,
                                    hidden=model_args.hidden_size, num_query_tokens=model_args.num_query_tokens, critic_head=model_args.critic_head)
        config.qformer_config.pad_token_id = tokenizer.pad_token_id
        model = LskdCriticModel(config)
    model.freeze_vision_model(args.freeze_vision)
    collator = LskdCollator(tokenizer, image_processor, with_rationale=args.with_rationale, augment=False,
                            max_length=data_args.max_length, critic_targets=True)
    trainer = CriticTrainer(model=model, args=args, train_dataset=train, eval_dataset=evals, data_collator=collator,
                            processing_class=tokenizer, compute_metrics=critic_metrics(args.threshold))
    return trainer, tokenizer, image_processor


def _metric(key: str) -> bool:
    return not any(s in key for s in ("runtime", "per_second", "preparation_time", "epoch"))


PROG = "hf-vcr train critic"
ARGUMENTS = (CriticModelArguments, CriticDataArguments, CriticConfig)


def make_parser(prog: str | None = PROG):
    """The parser of this flow: ``--help`` lists every field of CriticModelArguments, CriticDataArguments, CriticConfig."""
    return _make_parser(ARGUMENTS, prog=prog)


def run(model_args, data_args, args, argv=None) -> dict:
    """The whole flow on parsed arguments (``main`` parses, guards the output folder and marks the run complete)."""
    trainer, tokenizer, image_processor = build(model_args, data_args, args)
    announce_run(trainer, "critic")
    results: dict = {}
    results.update({f"initial_{k}": v for k, v in trainer.evaluate(metric_key_prefix="eval").items() if k.startswith("eval_") and _metric(k)})
    if args.do_train or not args.do_eval:
        trainer.train_resuming()
    results.update({k: v for k, v in trainer.evaluate().items() if _metric(k)})
    if trainer.is_world_process_zero():
        save_final(trainer.accelerator.unwrap_model(trainer.model), os.path.join(args.output_dir, "final"),
                           extras=[tokenizer, image_processor], write_card=lambda folder: write_card(folder, data_args, args, results, argv))
        finish(args, results, "critic_results.json", push=pushed(args), commit_message="LSKD critic model trained with hf_vcr")
    return results


def write_card(folder, data_args, args, results, argv=None) -> None:
    from hf_vcr.model_card import train_command, write_model_card

    final = os.path.join(args.output_dir, "final")
    write_model_card(
        folder,
        model_name=os.path.basename(os.path.abspath(args.output_dir)),
        method="LSKD critic",
        method_summary="A BLIP-2 image-text-matching backbone with an accept/reject head and QA-score and rationale-score "
        "regression heads (CE + MSE + MSE), used to filter machine-written localized QARs (threshold 0.8).",
        paper_title="Localized Symbolic Knowledge Distillation for Visual Commonsense Models",
        paper_url="https://arxiv.org/abs/2312.04837",
        architecture="LskdCriticModel (Blip2ForImageTextRetrieval + critic heads)",
        task_type="text-classification",
        dataset_name="synthetic annotated QARs" if data_args.synthetic else "LSKD critic annotations",
        train_command=train_command("train_critic.py", argv),
        hyperparameters={k: v for k, v in asdict(args).items() if k in (
            "ce_weight", "qa_mse_weight", "rationale_mse_weight", "freeze_vision", "threshold", "learning_rate",
            "num_train_epochs", "max_steps", "per_device_train_batch_size", "seed")},
        metrics={k: v for k, v in results.items() if not k.startswith("initial_")},
        load_path=args.hub_model_id or final,
        extra_load="Filter a corpus: `hf-vcr filter-corpus --critic DIR --input corpus.jsonl --threshold 0.8 --output kept.jsonl`.",
    )


def pushed(args) -> list[tuple[str, str | None]]:
    """The final model with its card, as HUB_MODEL_ID."""
    return [(os.path.join(args.output_dir, "final"), None)]


main = flow_main(ARGUMENTS, PROG, run, pushed)

if __name__ == "__main__":
    run_script(main)
