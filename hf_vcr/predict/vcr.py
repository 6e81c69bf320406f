"""``hf-vcr predict vcr``: the VCR leaderboard csv from a saved Q→A model and a saved QA→R model.

The leaderboard (Zellers et al., 2019) wants, per item, the probabilities of the 4 answers and of the
4 rationales conditioned on *each* answer (16 numbers), so that Q→AR can be scored with the answer
the submission predicts. The QA→R model therefore scores the joint view: rationale j after answer i,
for every (i, j). Test items have no labels; nothing here reads them.
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Sequence

import numpy as np

from .common import add_common_arguments, add_vcr_data_arguments, default_device, predict_logits, softmax


def write_vcr_predictions(path: str, annot_ids: Sequence[str], answer_logits: np.ndarray, rationale_logits: np.ndarray) -> None:
    """The leaderboard csv from logits: answer ``[N, 4]``, rationale ``[N, 4, 4]`` (answer conditioned on, rationale),
    each turned into probabilities with a softmax over its last axis. The training flows' ``val_predictions.csv``
    and ``hf-vcr predict`` both write through here."""
    from ..metrics.vcr import write_leaderboard_csv

    rationale_logits = np.asarray(rationale_logits).reshape(len(annot_ids), 4, 4)
    write_leaderboard_csv(path, list(annot_ids), softmax(answer_logits), softmax(rationale_logits))


def collator_for(model, tokenizer, region_features_dir: str | None = None):
    from ..data.collator import VcrCollator

    return VcrCollator.for_model(model.config, pad_token_id=tokenizer.pad_token_id or 0, region_features_dir=region_features_dir)


def leaderboard_logits(answer_model, rationale_model, dataset, tokenizer, *, max_length: int = 64, reference_style: str = "r2c",
                       region_features_dir: str | None = None, batch_size: int = 32, device: str = "cpu",
                       progress: bool = True, rationale_tokenizer=None) -> tuple[np.ndarray, np.ndarray]:
    """``(answer_logits [N, 4], rationale_logits [N, 4, 4])`` of two multiple-choice scorers on a loaded VCR split."""
    from ..data.vcr import tokenize_view

    r_tok = rationale_tokenizer or tokenizer
    q2a = tokenize_view(dataset, tokenizer, "q2a", max_length=max_length, reference_style=reference_style,
                        max_objects=answer_model.config.max_objects)
    joint = tokenize_view(dataset, r_tok, "joint", max_length=max_length, reference_style=reference_style,
                          max_objects=rationale_model.config.max_objects)
    answers = predict_logits(answer_model.to(device), q2a, collator_for(answer_model, tokenizer, region_features_dir), batch_size,
                             device, desc="predict Q→A", progress=progress)
    rationales = predict_logits(rationale_model.to(device), joint, collator_for(rationale_model, r_tok, region_features_dir),
                                batch_size, device, desc="predict QA→R (16 pairs per item)", progress=progress)
    return answers, rationales.reshape(-1, 4, 4)


def load_split(args):
    """The annotations of ``args`` as a Dataset (labels optional), cut to ``--max_items``."""
    from ..data.vcr import load_vcr

    path = os.path.abspath(args.annotations)
    ds = load_vcr(path, os.path.dirname(path), args.images_dir, cache_dir=args.cache_dir)
    if args.max_items:
        ds = ds.select(range(min(args.max_items, len(ds))))
    return ds


def load_model_and_tokenizer(directory: str, tokenizer_name: str | None = None, args=None):
    """A saved scorer and its tokenizer; with ``args``, checks that the visual input the model reads was given."""
    from transformers import AutoTokenizer

    from ..trainers.coupling_data import load_scorer

    if not os.path.isdir(directory):
        raise FileNotFoundError(f"saved model not found: {directory}")
    model = load_scorer(directory)
    source = getattr(model.config, "visual_source", "none")
    if args is not None and source == "backbone" and not args.images_dir:
        raise ValueError(f"{directory}: this model reads pixels (visual_source=backbone): pass --images-dir (the vcr1images folder)")
    if args is not None and source == "features" and not args.region_features_dir:
        raise ValueError(f"{directory}: this model reads region features (visual_source=features): pass --region-features-dir")
    return model, AutoTokenizer.from_pretrained(tokenizer_name or directory)


def labelled_metrics(dataset, answer_logits, rationale_logits) -> dict[str, float] | None:
    """Q→A, QA→R, Q→AR when every item has both labels, else None (a test split)."""
    from ..metrics.vcr import accuracies_from_scores

    a, r = dataset["answer_label"], dataset["rationale_label"]
    if len(a) == 0 or any(x is None for x in a) or any(x is None for x in r):
        return None
    return accuracies_from_scores(answer_logits, rationale_logits, a, r)


def pair_logits(f_a, f_r, dataset, tok_a, tok_r, args, device):
    """The answer and 16 rationale logits of two independent scorers (Q→A, QA→R)."""
    return leaderboard_logits(
        f_a, f_r, dataset, tok_a, rationale_tokenizer=tok_r, max_length=args.max_length, reference_style=args.reference_style,
        region_features_dir=args.region_features_dir, batch_size=args.batch_size, device=device, progress=not args.no_progress,
    )


def predict_pair(answer_dir: str, rationale_dir: str, args, what: str, logits=pair_logits) -> dict:
    """Load the two saved scorers, predict ``args.annotations`` with ``logits`` (:func:`pair_logits`, or a coupled
    model's), write ``args.output``; returns the summary printed."""
    from ..metrics.vcr import rounded_json
    from ..utils.runtime import log_runtime

    device = args.device or default_device()
    f_a, tok_a = load_model_and_tokenizer(answer_dir, args.tokenizer, args)
    f_r, tok_r = load_model_and_tokenizer(rationale_dir, args.tokenizer, args)
    log_runtime(device, f_a, what=f"predict {what} Q→A")
    log_runtime(device, f_r, what=f"predict {what} QA→R")
    dataset = load_split(args)
    answers, rationales = logits(f_a, f_r, dataset, tok_a, tok_r, args, device)
    write_vcr_predictions(args.output, dataset["annot_id"], answers, rationales)
    summary = {"predictions": args.output, "items": len(dataset)}
    metrics = labelled_metrics(dataset, answers, rationales)
    if metrics is not None:
        summary.update(json.loads(rounded_json(metrics)))
    print(json.dumps(summary))
    return summary


def run_folder_parser(method: str, description: str) -> argparse.ArgumentParser:
    """The parser of ``hf-vcr predict arc|joint``: a run's output folder, which holds its f_A/ and f_R/."""
    p = argparse.ArgumentParser(prog=f"hf-vcr predict {method}", description=description)
    p.add_argument("--model_dir", "--model-dir", dest="model_dir", required=True,
                   help=f"the {method} output directory (holding f_A/ and f_R/)")
    p.add_argument("--output", required=True, help="the csv to write")
    add_vcr_data_arguments(p)
    add_common_arguments(p)
    return p


def make_parser(prog: str = "hf-vcr predict vcr") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description="Write the VCR leaderboard csv (answer probabilities and the 16 "
                                "rationale probabilities conditioned on each answer) from a saved Q→A and a saved QA→R model. "
                                "Score it with `hf-vcr evaluate vcr` (labelled splits) or submit it (test).")
    p.add_argument("--q2a", required=True, help="saved Q→A model directory (e.g. runs/vcr/q2a)")
    p.add_argument("--qa2r", required=True, help="saved QA→R model directory (e.g. runs/vcr/qa2r)")
    p.add_argument("--output", required=True, help="the csv to write (e.g. test_predictions.csv)")
    add_vcr_data_arguments(p)
    add_common_arguments(p)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    predict_pair(args.q2a, args.qa2r, args, "vcr")
    return 0
