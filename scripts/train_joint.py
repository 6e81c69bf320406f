#!/usr/bin/env python
"""Joint Q→AR coupling: Q→A and QA→R trained end to end, the rationale model reading the predicted answer.

    python scripts/train_joint.py scripts/configs/joint_synthetic.yaml [--coupling softmax|gumbel|rl|direct16|baseline75]
    accelerate launch --multi_gpu --num_processes 2 scripts/train_joint.py scripts/configs/joint_synthetic.yaml

``--backbone visualbert`` uses transformers' VisualBertForMultipleChoice through hf_vcr's adapter.
The output directory holds f_A and f_R (``from_pretrained``-loadable), ``metrics.json`` and a model card;
a killed run resumes from its last complete checkpoint.
"""

from __future__ import annotations

import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import hf_vcr  # noqa: E402,F401
from hf_vcr.trainers.coupling_data import build_scorer  # noqa: E402
from hf_vcr.trainers.joint_config import JointConfig  # noqa: E402
from hf_vcr.trainers.joint_trainer import run_joint  # noqa: E402
from hf_vcr.trainers.vcr_components import build_tokenizer, prepare_splits  # noqa: E402
from hf_vcr.trainers.vcr_config import VcrDataArguments, VcrModelArguments  # noqa: E402
from hf_vcr.utils.checkpoints import atomic_write_json  # noqa: E402
from hf_vcr.utils.config_parsing import parse_config  # noqa: E402


def main(argv=None):
    model_args, data_args, args = parse_config([VcrModelArguments, VcrDataArguments, JointConfig], argv)
    train, evaluation, eval_path = prepare_splits(data_args, args)
    tokenizer = build_tokenizer(model_args, train)
    metrics = run_joint(
        args, train, evaluation, tokenizer, lambda: build_scorer(args.backbone, model_args, tokenizer),
        max_length=data_args.max_length, reference_style=data_args.reference_style,
        collator_kwargs={"region_features_dir": model_args.region_features_dir},
    )
    if args.process_index == 0:
        atomic_write_json(os.path.join(args.output_dir, "metrics.json"), {**metrics, "eval_file": eval_path, "coupling": args.coupling})
        keys = ("q2a", "qa2r", "q2ar", "qa2r_predicted_answer")
        print(json.dumps({"coupling": args.coupling, **{k: round(metrics[k], 2) for k in keys if metrics.get(k) is not None}}))
        if args.push_to_hub:  # f_A and f_R, each with its card, as HUB_MODEL_ID-f_a / -f_r
            from hf_vcr.hub import push_trained_model

            for name in ("f_A", "f_R"):
                push_trained_model(args, os.path.join(args.output_dir, name), sub_model=name,
                                   commit_message=f"Joint Q→AR {name} trained with hf_vcr")
    return metrics


if __name__ == "__main__":
    from hf_vcr.utils.distributed import end_distributed

    main()
    end_distributed()
