"""VCR metrics: Q→A, QA→R, Q→AR, and the official leaderboard csv.

Q→AR counts an item right only when the answer is right *and* the rationale chosen
for the predicted answer is right (Zellers et al., 2019, section 3).
"""

from __future__ import annotations

import argparse
import csv
import os
from typing import Sequence

import numpy as np

N_CHOICES = 4
ANSWER_COLUMNS = [f"answer_{i}" for i in range(N_CHOICES)]
RATIONALE_COLUMNS = [f"rationale_conditioned_on_a{a}_{r}" for a in range(N_CHOICES) for r in range(N_CHOICES)]
LEADERBOARD_COLUMNS = ["annot_id"] + ANSWER_COLUMNS + RATIONALE_COLUMNS


def vcr_accuracies(
    answer_pred: Sequence[int],
    answer_label: Sequence[int],
    rationale_pred: Sequence[int],
    rationale_label: Sequence[int],
    rationale_pred_given_right_answer: Sequence[int] | None = None,
) -> dict[str, float]:
    """Percent accuracies for the VCR tasks.

    ``rationale_pred`` is the rationale chosen when the *predicted* answer is fed to QA→R
    (used for Q→AR); ``rationale_pred_given_right_answer`` is the one chosen with the right
    answer (the QA→R task). When the latter is None, ``rationale_pred`` serves both.
    Also reports QA→R split by whether Q→A was right; a split without items is ``None`` (undefined: written as
    JSON ``null``, never ``NaN``).
    """
    a_hat, a = np.asarray(answer_pred), np.asarray(answer_label)
    r_hat, r = np.asarray(rationale_pred), np.asarray(rationale_label)
    r_right_answer = r_hat if rationale_pred_given_right_answer is None else np.asarray(rationale_pred_given_right_answer)
    if not (len(a_hat) == len(a) == len(r_hat) == len(r) == len(r_right_answer)):
        raise ValueError("all prediction and label arrays must have the same length")
    if len(a) == 0:
        raise ValueError("no items to evaluate")
    a_ok, r_ok = a_hat == a, r_right_answer == r
    out = {
        "q2a": 100.0 * a_ok.mean(),
        "qa2r": 100.0 * r_ok.mean(),
        "q2ar": 100.0 * (a_ok & (r_hat == r)).mean(),
        "qa2r_when_q2a_right": 100.0 * r_ok[a_ok].mean() if a_ok.any() else None,
        "qa2r_when_q2a_wrong": 100.0 * r_ok[~a_ok].mean() if (~a_ok).any() else None,
    }
    return {k: None if v is None else float(v) for k, v in out.items()}


def accuracies_from_scores(answer_scores: np.ndarray, rationale_scores: np.ndarray, answer_label, rationale_label) -> dict[str, float]:
    """Metrics from answer scores ``[N, 4]`` and rationale scores ``[N, 4 answers, 4 rationales]``."""
    answer_scores, rationale_scores = np.asarray(answer_scores), np.asarray(rationale_scores)
    a_hat = answer_scores.argmax(-1)
    a = np.asarray(answer_label)
    idx = np.arange(len(a))
    return vcr_accuracies(
        a_hat,
        a,
        rationale_scores[idx, a_hat].argmax(-1),
        rationale_label,
        rationale_pred_given_right_answer=rationale_scores[idx, a].argmax(-1),
    )


def write_leaderboard_csv(path: str, annot_ids: Sequence[str], answer_probs: np.ndarray, rationale_probs: np.ndarray) -> None:
    """Write the official leaderboard file: ``annot_id, answer_0..3, rationale_conditioned_on_a{i}_{j}``.

    ``answer_probs`` is ``[N, 4]``; ``rationale_probs`` is ``[N, 4, 4]`` (answer conditioned on, rationale).
    """
    answer_probs, rationale_probs = np.asarray(answer_probs), np.asarray(rationale_probs)
    if answer_probs.shape != (len(annot_ids), N_CHOICES) or rationale_probs.shape != (len(annot_ids), N_CHOICES, N_CHOICES):
        raise ValueError(
            f"expected answer_probs [N, 4] and rationale_probs [N, 4, 4] for N={len(annot_ids)}, "
            f"got {answer_probs.shape} and {rationale_probs.shape}"
        )
    tmp = path + ".tmp"
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(LEADERBOARD_COLUMNS)
        for i, aid in enumerate(annot_ids):
            w.writerow([aid] + [f"{p:.6f}" for p in answer_probs[i]] + [f"{p:.6f}" for p in rationale_probs[i].reshape(-1)])
    os.replace(tmp, path)


def read_leaderboard_csv(path: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``annot_id -> (answer_scores [4], rationale_scores [4, 4])`` from a leaderboard csv; every score must be a
    finite number (NaN would make argmax pick choice 0), every annot_id appear once."""
    return _read_leaderboard(path)[0]


def _read_leaderboard(path: str) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], dict[str, int]]:
    from ..utils.csv_files import read_csv_rows

    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    lines: dict[str, int] = {}
    for line_no, row in read_csv_rows(path, "VCR leaderboard csv", ValueError, LEADERBOARD_COLUMNS):
        aid = row["annot_id"].strip()
        where = f"{path}, line {line_no} ({aid})"
        try:
            scores = np.array([float(row[c]) for c in ANSWER_COLUMNS + RATIONALE_COLUMNS])
        except ValueError:
            bad = next(c for c in ANSWER_COLUMNS + RATIONALE_COLUMNS if not _is_float(row[c]))
            raise ValueError(f"{where}: {bad} is not a number: {row[bad]!r}") from None
        if not np.isfinite(scores).all():
            bad = (ANSWER_COLUMNS + RATIONALE_COLUMNS)[int(np.flatnonzero(~np.isfinite(scores))[0])]
            raise ValueError(f"{where}: {bad} is {row[bad].strip()}; scores must be finite numbers")
        if aid in out:
            raise ValueError(f"{where}: duplicate annot_id (first on line {lines[aid]})")
        out[aid], lines[aid] = (scores[:N_CHOICES], scores[N_CHOICES:].reshape(N_CHOICES, N_CHOICES)), line_no
    if not out:
        raise ValueError(f"{path}: no predictions (only a header)")
    return out, lines


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def evaluate_leaderboard(predictions_csv: str, annotations_jsonl: str) -> dict[str, float]:
    """Score a leaderboard csv against a labelled VCR jsonl: one prediction per item, none for unknown ids."""
    from ..data.vcr_format import enumerate_items

    preds, lines = _read_leaderboard(predictions_csv)
    items = []
    for line_no, item in enumerate_items(annotations_jsonl):
        if "answer_label" not in item or "rationale_label" not in item:
            raise ValueError(f"{annotations_jsonl}, line {line_no} ({item['annot_id']}): no answer_label / rationale_label; "
                             "items without labels (the test split) cannot be scored")
        items.append(item)
    if not items:
        raise ValueError(f"{annotations_jsonl}: no VCR items (empty file)")
    missing = [it["annot_id"] for it in items if it["annot_id"] not in preds]
    if missing:
        raise ValueError(f"{predictions_csv}: no prediction for {len(missing)} of {len(items)} annot_ids of {annotations_jsonl}, e.g. {missing[:3]}")
    known = {it["annot_id"] for it in items}
    extra = [aid for aid in preds if aid not in known]
    if extra:
        raise ValueError(f"{predictions_csv}, line {lines[extra[0]]} ({extra[0]}): not an annot_id of {annotations_jsonl}"
                         f" ({len(extra)} such predictions)")
    answer_scores = np.stack([preds[it["annot_id"]][0] for it in items])
    rationale_scores = np.stack([preds[it["annot_id"]][1] for it in items])
    return accuracies_from_scores(
        answer_scores, rationale_scores, [it["answer_label"] for it in items], [it["rationale_label"] for it in items]
    )


def rounded_json(metrics: dict[str, float]) -> str:
    """Metrics as one strict JSON object: percent to two decimals, undefined (None, NaN) values as null."""
    from ..utils.json_files import dumps_strict

    return dumps_strict(metrics, 2)


def evaluate_cli(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="hf-vcr evaluate vcr", description="Score a VCR leaderboard csv.")
    parser.add_argument("--predictions", required=True, help="leaderboard-format csv")
    parser.add_argument("--annotations", required=True, help="labelled VCR jsonl (e.g. val.jsonl)")
    args = parser.parse_args(argv)
    result = evaluate_leaderboard(args.predictions, args.annotations)
    print(rounded_json(result))
    return 0
