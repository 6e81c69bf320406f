#!/usr/bin/env python
"""Train the LSKD critic (accept/reject + QA-score and rationale-score regression) on annotated QARs.

    python scripts/train_critic.py scripts/configs/critic_synthetic.yaml [--field value ...]
    accelerate launch --multi_gpu --num_processes 2 scripts/train_critic.py scripts/configs/critic_synthetic.yaml

Real data: ``--synthetic false --train_file critic_train.jsonl --eval_file critic_eval.jsonl --images_dir IMAGES
--model_name_or_path DIR --tokenizer_name bert-base-uncased``. The saved critic (``OUTPUT_DIR/final``) is what
``hf-vcr filter-corpus --critic`` loads. The last line printed is a JSON object of the evaluation metrics.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict, dataclass, field

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402
from accelerate import PartialState  # noqa: E402
from transformers.models.blip.image_processing_pil_blip import BlipImageProcessorPil  # noqa: E402

import hf_vcr  # noqa: E402,F401
from hf_vcr.data.lskd import LskdCollator, load_lskd  # noqa: E402
from hf_vcr.data.regions import refs_to_text  # noqa: E402
from hf_vcr.models.configuration_lskd import tiny_critic_config  # noqa: E402
from hf_vcr.models.modeling_lskd import LskdCriticModel  # noqa: E402
from hf_vcr.trainers.critic_config import CriticConfig  # noqa: E402
from hf_vcr.trainers.critic_trainer import CriticTrainer, critic_metrics  # noqa: E402
from hf_vcr.utils.checkpoints import atomic_directory, atomic_write_json  # noqa: E402
from hf_vcr.utils.config_parsing import parse_config  # noqa: E402


@dataclass
class CriticModelArguments:
    model_name_or_path: str | None = field(default=None, metadata={"help": "Saved LskdCriticModel (or a converted BLIP-2 ITM checkpoint); default: a tiny random model."})
    tokenizer_name: str | None = field(default=None, metadata={"help": "Tokenizer name or path; default: a word-level tokenizer built from the data."})
    image_size: int = field(default=32, metadata={"help": "Image size of the tiny model / image processor."})
    patch_size: int = field(default=8, metadata={"help": "ViT patch size of the tiny model."})
    hidden_size: int = field(default=64, metadata={"help": "Hidden size of the tiny model."})
    num_query_tokens: int = field(default=8, metadata={"help": "Learned query tokens of the tiny model."})


@dataclass
class CriticDataArguments:
    synthetic: bool = field(default=False, metadata={"help": "Generate and use the embedded synthetic critic set."})
    synthetic_dir: str | None = field(default=None, metadata={"help": "Where the synthetic files go (default: OUTPUT_DIR/synthetic_data)."})
    synthetic_items: int = field(default=1200, metadata={"help": "Synthetic annotated QARs (4/5 train, 1/5 eval)."})
    synthetic_seed: int = field(default=0, metadata={"help": "Seed of the synthetic data."})
    train_file: str | None = field(default=None, metadata={"help": "Annotated jsonl (label, qa_score, r_score)."})
    eval_file: str | None = field(default=None, metadata={"help": "Annotated jsonl for evaluation."})
    images_dir: str | None = field(default=None, metadata={"help": "Root of the 'image' paths."})
    region_file: str | None = field(default=None, metadata={"help": "Optional separate region file."})
    max_length: int = field(default=48, metadata={"help": "Text token limit."})


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
                                    hidden=model_args.hidden_size, num_query_tokens=model_args.num_query_tokens)
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


def main(argv=None) -> dict:
    model_args, data_args, args = parse_config([CriticModelArguments, CriticDataArguments, CriticConfig], argv)
    trainer, tokenizer, image_processor = build(model_args, data_args, args)
    results: dict = {}
    results.update({f"initial_{k}": v for k, v in trainer.evaluate(metric_key_prefix="eval").items() if k.startswith("eval_") and _metric(k)})
    if args.do_train or not args.do_eval:
        trainer.train_resuming()
    results.update({k: v for k, v in trainer.evaluate().items() if _metric(k)})
    if trainer.is_world_process_zero():
        final = os.path.join(args.output_dir, "final")
        model = trainer.accelerator.unwrap_model(trainer.model)
        with atomic_directory(final) as tmp:
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
            image_processor.save_pretrained(tmp)
            try:
                from hf_vcr.model_card import train_command, write_model_card

                write_model_card(
                    tmp,
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
            except Exception as e:  # noqa: BLE001
                print(f"warning: model card not written: {e}", file=sys.stderr)
        atomic_write_json(os.path.join(args.output_dir, "critic_results.json"), results)
        print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in results.items()}))
        if args.push_to_hub:  # the final model with its card
            from hf_vcr.hub import push_trained_model

            push_trained_model(args, final, commit_message="LSKD critic model trained with hf_vcr")
    return results


if __name__ == "__main__":
    from hf_vcr.utils.distributed import end_distributed

    main()
    end_distributed()
