"""The embedded learnable data sets, one generator per corpus, each in its real on-disk layout.

Nothing here is committed as data: every set is drawn deterministically from a seed in
seconds. ``hf-vcr prepare <corpus> --output DIR`` writes one.
"""

from __future__ import annotations

import argparse
import json
from typing import Sequence

from .synthetic_vcr import write_vcr_corpus

GENERATORS = {
    "vcr": write_vcr_corpus,
}

__all__ = ["GENERATORS", "write_vcr_corpus", "prepare_cli"]


def prepare_cli(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="hf-vcr prepare", description="Write an embedded synthetic corpus.")
    parser.add_argument("corpus", choices=sorted(GENERATORS))
    parser.add_argument("--output", required=True)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    print(json.dumps(GENERATORS[args.corpus](args.output, seed=args.seed)))
    return 0
