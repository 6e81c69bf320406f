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

import os


import hf_vcr  # noqa: F401
from hf_vcr.trainers.arc_config import ArcConfig
from hf_vcr.trainers.arc_trainer import run_arc
from hf_vcr.trainers.coupling_data import build_scorer
from hf_vcr.trainers.vcr_components import build_tokenizer, prepare_splits
from hf_vcr.trainers.vcr_config import VcrDataArguments, VcrModelArguments
from hf_vcr.flows import run_script
from hf_vcr.utils.config_parsing import make_parser as _make_parser
from hf_vcr.flows.common import finish, flow_main


PROG = "hf-vcr train arc"
ARGUMENTS = (VcrModelArguments, VcrDataArguments, ArcConfig)


def make_parser(prog: str | None = PROG):
    """The parser of this flow: ``--help`` lists every field of VcrModelArguments, VcrDataArguments, ArcConfig."""
    return _make_parser(ARGUMENTS, prog=prog)


def run(model_args, data_args, args, argv=None) -> dict:
    """The whole flow on parsed arguments (``main`` parses, guards the output folder and marks the run complete)."""
    train, evaluation, eval_path = prepare_splits(data_args, args)
    tokenizer = build_tokenizer(model_args, train)
    metrics = run_arc(
        args, train, evaluation, tokenizer, lambda: build_scorer(args.backbone, model_args, tokenizer),
        max_length=data_args.max_length, reference_style=data_args.reference_style,
        collator_kwargs={"region_features_dir": model_args.region_features_dir},
    )
    if args.process_index == 0:
        finish(args, {**metrics, "eval_file": eval_path}, "metrics.json",
               push=pushed(args), commit_message="ARC model trained with hf_vcr")
    return metrics


def pushed(args) -> list[tuple[str, str | None]]:
    """f_A, f_R and f_C, each with its card, as HUB_MODEL_ID-f_a / -f_r / -f_c."""
    return [(os.path.join(args.output_dir, name), name) for name in ("f_A", "f_R", "f_C")]


main = flow_main(ARGUMENTS, PROG, run, pushed)

if __name__ == "__main__":
    run_script(main)
