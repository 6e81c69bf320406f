"""Joint Q→AR coupling: Q→A and QA→R trained end to end, the rationale model reading the predicted answer.

    python scripts/train_joint.py scripts/configs/joint_synthetic.yaml [--coupling softmax|gumbel|rl|direct16|baseline75]
    accelerate launch --multi_gpu --num_processes 2 scripts/train_joint.py scripts/configs/joint_synthetic.yaml

``--backbone visualbert`` uses transformers' VisualBertForMultipleChoice through hf_vcr's adapter.
The output directory holds f_A and f_R (``from_pretrained``-loadable), ``metrics.json`` and a model card;
a killed run resumes from its last complete checkpoint.
"""

from __future__ import annotations

import os


import hf_vcr  # noqa: F401
from hf_vcr.trainers.coupling_data import build_scorer
from hf_vcr.trainers.joint_config import JointConfig
from hf_vcr.trainers.joint_trainer import run_joint
from hf_vcr.trainers.vcr_components import build_tokenizer, prepare_splits
from hf_vcr.trainers.vcr_config import VcrDataArguments, VcrModelArguments
from hf_vcr.flows import run_script
from hf_vcr.utils.config_parsing import make_parser as _make_parser
from hf_vcr.flows.common import finish, flow_main


PROG = "hf-vcr train joint"
ARGUMENTS = (VcrModelArguments, VcrDataArguments, JointConfig)


def make_parser(prog: str | None = PROG):
    """The parser of this flow: ``--help`` lists every field of VcrModelArguments, VcrDataArguments, JointConfig."""
    return _make_parser(ARGUMENTS, prog=prog)


def run(model_args, data_args, args, argv=None) -> dict:
    """The whole flow on parsed arguments (``main`` parses, guards the output folder and marks the run complete)."""
    train, evaluation, eval_path = prepare_splits(data_args, args)
    tokenizer = build_tokenizer(model_args, train)
    metrics = run_joint(
        args, train, evaluation, tokenizer, lambda: build_scorer(args.backbone, model_args, tokenizer),
        max_length=data_args.max_length, reference_style=data_args.reference_style,
        collator_kwargs={"region_features_dir": model_args.region_features_dir},
    )
    if args.process_index == 0:
        finish(args, {"coupling": args.coupling, **metrics, "eval_file": eval_path}, "metrics.json",
               push=pushed(args), commit_message="Joint Q→AR model trained with hf_vcr")
    return metrics


def pushed(args) -> list[tuple[str, str | None]]:
    """f_A and f_R, each with its card, as HUB_MODEL_ID-f_a / -f_r."""
    return [(os.path.join(args.output_dir, name), name) for name in ("f_A", "f_R")]


main = flow_main(ARGUMENTS, PROG, run, pushed)

if __name__ == "__main__":
    run_script(main)
