#!/usr/bin/env python
"""ARC (Algorithm 1) in one command: the QR→A teacher f_C with early stopping, its cached logits and
features, then f_A (Q→A) and f_R (QA→R) trained together with KD-A and KD-R.

    python scripts/train_arc.py scripts/configs/arc_synthetic.yaml [--field value ...]
    accelerate launch --multi_gpu --num_processes 2 scripts/train_arc.py scripts/configs/arc_synthetic.yaml

``--backbone visualbert`` trains transformers' VisualBertForMultipleChoice (through hf_vcr's adapter)
instead of hf_vcr's VcrForMultipleChoice. The output directory holds f_A, f_R and f_C (each loadable
with ``from_pretrained``), ``metrics.json`` (Q→A, QA→R, Q→AR, QR→A) and a model card. A killed run
resumes in the stage it was stopped in.
"""

from __future__ import annotations

import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import hf_vcr  # noqa: E402,F401
from hf_vcr.trainers.arc_config import ArcConfig  # noqa: E402
from hf_vcr.trainers.arc_trainer import run_arc  # noqa: E402
from hf_vcr.trainers.coupling_data import build_scorer  # noqa: E402
from hf_vcr.trainers.vcr_components import build_tokenizer, prepare_splits  # noqa: E402
from hf_vcr.trainers.vcr_config import VcrDataArguments, VcrModelArguments  # noqa: E402
from hf_vcr.utils.checkpoints import atomic_write_json  # noqa: E402
from hf_vcr.utils.config_parsing import parse_config  # noqa: E402


def main(argv=None):
    model_args, data_args, args = parse_config([VcrModelArguments, VcrDataArguments, ArcConfig], argv)
    train, evaluation, eval_path = prepare_splits(data_args, args)
    tokenizer = build_tokenizer(model_args, train)
    metrics = run_arc(
        args, train, evaluation, tokenizer, lambda: build_scorer(args.backbone, model_args, tokenizer),
        max_length=data_args.max_length, reference_style=data_args.reference_style,
        collator_kwargs={"region_features_dir": model_args.region_features_dir},
    )
    if args.process_index == 0:
        atomic_write_json(os.path.join(args.output_dir, "metrics.json"), {**metrics, "eval_file": eval_path})
        print(json.dumps({k: round(v, 2) for k, v in metrics.items() if k in ("q2a", "qa2r", "q2ar", "qr2a") and v is not None}))
        if args.push_to_hub:  # f_A, f_R and f_C, each with its card, as HUB_MODEL_ID-f_a / -f_r / -f_c
            from hf_vcr.hub import push_trained_model

            for name in ("f_A", "f_R", "f_C"):
                push_trained_model(args, os.path.join(args.output_dir, name), sub_model=name,
                                   commit_message=f"ARC {name} trained with hf_vcr")
    return metrics


if __name__ == "__main__":
    from hf_vcr.utils.distributed import end_distributed

    main()
    end_distributed()
