"""The embedded learnable data sets, one generator per corpus, each in its real on-disk layout.

Nothing here is committed as data: every set is drawn deterministically from a seed in
seconds. ``hf-vcr prepare <corpus> --output DIR`` writes one.
"""

from __future__ import annotations

import argparse
import json
from typing import Sequence

from .synthetic_introspect import write_synthetic_introspect
from .synthetic_lskd import write_synthetic_lskd
from .synthetic_vcr import write_vcr_corpus
from .synthetic_videoqa import make_synthetic_videoqa

# corpus -> writer(output_dir, seed=...): each writes its corpus in the real on-disk layout
GENERATORS = {
    "vcr": write_vcr_corpus,  # VCR 1.0: {split}.jsonl + vcr1images/<movie>/<frame>.jpg/.json
    "introspect": write_synthetic_introspect,  # VQA-Introspect json + VQAv2 questions/annotations + region features
    "videoqa": make_synthetic_videoqa,  # NExT-QA csv + app_mot h5 clip features
    "lskd": write_synthetic_lskd,  # LSKD localized corpus jsonl + region file + critic and MC sets
}

__all__ = [
    "GENERATORS", "write_vcr_corpus", "write_synthetic_introspect", "make_synthetic_videoqa", "write_synthetic_lskd",
    "prepare_cli",
]


def prepare_cli(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="hf-vcr prepare", description="Write an embedded synthetic corpus.")
    parser.add_argument("corpus", choices=sorted(GENERATORS))
    parser.add_argument("--output", required=True)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    print(json.dumps(GENERATORS[args.corpus](args.output, seed=args.seed), default=str))
    return 0
