"""``hf-vcr predict arc``: the VCR leaderboard csv from an ARC run's f_A (Q→A) and f_R (QA→R).

At test time ARC runs only f_A and f_R (the teacher f_C is for training), each an ordinary
multiple-choice scorer: the prediction is the one of :mod:`hf_vcr.predict.vcr`.
"""

from __future__ import annotations

import argparse
import os
from typing import Sequence

from .common import add_common_arguments, add_vcr_data_arguments
from .vcr import predict_pair


def make_parser(prog: str = "hf-vcr predict arc") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description="Write the VCR leaderboard csv from an ARC run's f_A and f_R.")
    p.add_argument("--model_dir", "--model-dir", dest="model_dir", required=True,
                   help="the ARC output directory (holding f_A/ and f_R/)")
    p.add_argument("--output", required=True, help="the csv to write")
    add_vcr_data_arguments(p)
    add_common_arguments(p)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    predict_pair(os.path.join(args.model_dir, "f_A"), os.path.join(args.model_dir, "f_R"), args, "arc")
    return 0
