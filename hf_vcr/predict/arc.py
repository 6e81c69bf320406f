"""``hf-vcr predict arc``: the VCR leaderboard csv from an ARC run's f_A (Q→A) and f_R (QA→R).

At test time ARC runs only f_A and f_R (the teacher f_C is for training), each an ordinary
multiple-choice scorer: the prediction is the one of :mod:`hf_vcr.predict.vcr`.
"""

from __future__ import annotations

import argparse
import os
from typing import Sequence

from .vcr import predict_pair, run_folder_parser


def make_parser() -> argparse.ArgumentParser:
    return run_folder_parser("arc", "Write the VCR leaderboard csv from an ARC run's f_A and f_R.")


def main(argv: Sequence[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    predict_pair(os.path.join(args.model_dir, "f_A"), os.path.join(args.model_dir, "f_R"), args, "arc")
    return 0
