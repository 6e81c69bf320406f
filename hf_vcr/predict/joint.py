"""``hf-vcr predict joint``: the VCR leaderboard csv from a joint Q→AR coupling run's f_A and f_R.

The joint f_R reads the question followed by an answer written into its answer slot (not the
ordinary QA→R pair encoding), so the 16 rationale scores come from the coupled model's deterministic
evaluation mode: every answer fed one-hot, rationale j scored under answer i.
"""

from __future__ import annotations

import argparse
import os
from typing import Sequence

import numpy as np

from .common import batched_outputs
from .vcr import predict_pair, run_folder_parser


def joint_logits(answer_model, rationale_model, dataset, tokenizer, *, max_length: int = 64, reference_style: str = "r2c",
                 region_features_dir: str | None = None, batch_size: int = 32, device: str = "cpu",
                 progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """``(answer_logits [N, 4], rationale_logits [N, 4, 4])`` of a joint-coupling pair on a loaded VCR split."""
    from ..data.vcr import tokenize_view
    from ..trainers.coupling_data import merge_views
    from ..trainers.joint_trainer import JointCouplingModel, make_joint_collator

    cfg = answer_model.config
    kw = dict(max_length=max_length, reference_style=reference_style, max_objects=cfg.max_objects)
    merged = merge_views({"a": tokenize_view(dataset, tokenizer, "q2a", **kw), "j": tokenize_view(dataset, tokenizer, "joint", **kw)})
    # the same collator (and answer-slot length) as training: see run_joint
    collator = make_joint_collator(cfg, tokenizer, max_length=2 * max_length, region_features_dir=region_features_dir)
    model = JointCouplingModel(answer_model, rationale_model).to(device)
    out = batched_outputs(model, merged, collator, batch_size, device, keys=("answer_logits", "pair_rationale_logits"),
                          forward=lambda m, batch: m(coupling="eval", **batch), desc="predict joint Q→A + QA→R",
                          progress=progress)
    return out["answer_logits"], out["pair_rationale_logits"].reshape(-1, 4, 4)


def coupled_logits(f_a, f_r, dataset, tok_a, tok_r, args, device):
    return joint_logits(f_a, f_r, dataset, tok_a, max_length=args.max_length, reference_style=args.reference_style,
                        region_features_dir=args.region_features_dir, batch_size=args.batch_size, device=device,
                        progress=not args.no_progress)


def make_parser() -> argparse.ArgumentParser:
    return run_folder_parser("joint", "Write the VCR leaderboard csv from a joint-coupling run's f_A and f_R.")


def main(argv: Sequence[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    predict_pair(os.path.join(args.model_dir, "f_A"), os.path.join(args.model_dir, "f_R"), args, "joint", logits=coupled_logits)
    return 0
