"""VideoQA metrics: NExT-QA multiple choice (per question type), MSVD-QA / MSRVTT-QA open-ended
(overall and per question word), and the overlap of a grounded causal clip mask with known clips.

NExT-QA follows the official evaluation (``eval_mc.py`` of doc-doc/NExT-QA): TP questions are counted with
TN, the group accuracies ``acc_c`` / ``acc_t`` / ``acc_d`` pool the questions of CW+CH, TN+TP+TC and DC+DL+DO,
and every value is a percentage.
"""

from __future__ import annotations

import argparse
import os
from typing import Sequence

import numpy as np

from ..utils.json_files import load_json_file

NEXTQA_REPORTED_TYPES = ("CW", "CH", "TN", "TC", "DC", "DL", "DO")
NEXTQA_GROUPS = {"acc_c": ("CW", "CH"), "acc_t": ("TN", "TC"), "acc_d": ("DC", "DL", "DO")}
OPEN_ENDED_WORDS = ("what", "who", "how", "when", "where")


def _pct(correct: np.ndarray) -> float:
    return float(100.0 * correct.mean()) if len(correct) else float("nan")


def nextqa_accuracies(predictions: Sequence[int], answers: Sequence[int], types: Sequence[str]) -> dict[str, float]:
    """``accuracy``, one key per type (CW, CH, TN incl. TP, TC, DC, DL, DO) and ``acc_c``/``acc_t``/``acc_d``, in percent.

    A type with no question is reported as NaN.
    """
    pred, gold = np.asarray(predictions), np.asarray(answers)
    qtypes = np.array(["TN" if t == "TP" else t for t in types])
    if not (len(pred) == len(gold) == len(qtypes)):
        raise ValueError(f"predictions ({len(pred)}), answers ({len(gold)}) and types ({len(qtypes)}) differ in length")
    if len(pred) == 0:
        raise ValueError("no questions to evaluate")
    unknown = sorted(set(qtypes) - set(NEXTQA_REPORTED_TYPES))
    if unknown:
        raise ValueError(f"unknown NExT-QA question types {unknown}")
    correct = pred == gold
    out = {"accuracy": _pct(correct)}
    for t in NEXTQA_REPORTED_TYPES:
        out[t] = _pct(correct[qtypes == t])
    for name, members in NEXTQA_GROUPS.items():
        out[name] = _pct(correct[np.isin(qtypes, members)])
    return out


def open_ended_accuracies(predictions: Sequence[str], answers: Sequence[str], questions: Sequence[str]) -> dict[str, float]:
    """MSVD-QA / MSRVTT-QA: exact-match ``accuracy`` and one ``acc_<word>`` per question word (what, who, how,
    when, where; any other first word counts only in ``accuracy``), in percent. Answers outside the model's
    answer vocabulary simply count as wrong."""
    from ..data.videoqa import question_word

    pred = np.array([str(p).strip() for p in predictions], dtype=object)
    gold = np.array([str(a).strip() for a in answers], dtype=object)
    if not (len(pred) == len(gold) == len(questions)):
        raise ValueError(f"predictions ({len(pred)}), answers ({len(gold)}) and questions ({len(questions)}) differ in length")
    if len(pred) == 0:
        raise ValueError("no questions to evaluate")
    words = np.array([question_word(q) for q in questions])
    correct = pred == gold
    out = {"accuracy": _pct(correct)}
    for w in OPEN_ENDED_WORDS:
        if (words == w).any():
            out[f"acc_{w}"] = _pct(correct[words == w])
    return out


def grounding_overlap(
    causal_masks: np.ndarray, causal_probs: np.ndarray, true_clips: Sequence[Sequence[int]], chance_draws: int = 50, seed: int = 0
) -> dict[str, float]:
    """How well a grounded causal mask ``[N, K]`` (and the per-clip causal scores ``[N, K]``) covers known clips.

    * ``mask_precision`` / ``mask_recall`` / ``mask_iou``: of the 0/1 mask against the known clip set
      (precision of an empty mask counts as 0), beside ``chance_*``: the same for a random mask that selects
      as many clips (expected value over ``chance_draws`` draws).
    * ``top_hit``: fraction of the ``|S|`` highest-scoring clips that are in the known set ``S``; chance is ``|S| / K``.
    * ``mask_fraction``: mean fraction of clips marked causal.
    All in percent.
    """
    masks, probs = np.asarray(causal_masks).astype(bool), np.asarray(causal_probs, dtype=np.float64)
    n, k = masks.shape
    if len(true_clips) != n or probs.shape != masks.shape:
        raise ValueError(f"{n} masks, {probs.shape[0]} score rows and {len(true_clips)} clip sets differ")
    rng = np.random.default_rng(seed)
    keys = ["mask_precision", "mask_recall", "mask_iou", "top_hit", "chance_precision", "chance_recall", "chance_iou", "chance_top_hit"]
    acc = {key: [] for key in keys}

    def prf(sel: np.ndarray, truth: np.ndarray):
        inter = (sel & truth).sum()
        union = (sel | truth).sum()
        return (inter / sel.sum() if sel.sum() else 0.0), inter / truth.sum(), (inter / union if union else 0.0)

    for i in range(n):
        truth = np.zeros(k, dtype=bool)
        truth[list(true_clips[i])] = True
        if not truth.any():
            raise ValueError(f"example {i} has an empty set of known causal clips")
        p, r, u = prf(masks[i], truth)
        acc["mask_precision"].append(p)
        acc["mask_recall"].append(r)
        acc["mask_iou"].append(u)
        s = int(truth.sum())
        top = np.argsort(-probs[i], kind="stable")[:s]
        acc["top_hit"].append(truth[top].mean())
        acc["chance_top_hit"].append(s / k)
        m = int(masks[i].sum())
        cp = cr = cu = 0.0
        for _ in range(chance_draws):
            sel = np.zeros(k, dtype=bool)
            sel[rng.choice(k, size=m, replace=False)] = True
            a, b, c = prf(sel, truth)
            cp, cr, cu = cp + a, cr + b, cu + c
        acc["chance_precision"].append(cp / chance_draws)
        acc["chance_recall"].append(cr / chance_draws)
        acc["chance_iou"].append(cu / chance_draws)
    out = {key: float(100.0 * np.mean(v)) for key, v in acc.items()}
    out["mask_fraction"] = float(100.0 * masks.mean())
    return out


# -------------------------------------------------------------------------------------------- files + CLI
def read_nextqa_predictions(path: str) -> dict[str, dict[str, int]]:
    """The official NExT-QA prediction file: ``{"{video}_{qid}": {"prediction": int, "answer": int}}``."""
    data = load_json_file(path, "prediction file", expect=dict, expected="an object mapping '{video}_{qid}' to predictions")
    out = {}
    for key, value in data.items():
        if isinstance(value, dict):
            if "prediction" not in value:
                raise ValueError(f"{path}, record {key!r}: no 'prediction' field")
            pred = value["prediction"]
        else:
            pred = value
        if isinstance(pred, bool) or not isinstance(pred, (int, np.integer)) and not (isinstance(pred, float) and pred.is_integer()):
            raise ValueError(f"{path}, record {key!r}: prediction must be an option index (int), got {pred!r}")
        out[key] = {"prediction": int(pred)}
        if isinstance(value, dict) and "answer" in value:
            out[key]["answer"] = value["answer"]
    return out


def evaluate_nextqa_files(predictions_path: str, annotations_csv: str) -> dict[str, float]:
    from ..data.videoqa import read_nextqa_csv

    records = read_nextqa_csv(annotations_csv)
    preds = read_nextqa_predictions(predictions_path)
    keys = [r["key"] for r in records]
    missing = [k for k in keys if k not in preds]
    if missing:
        raise ValueError(f"{predictions_path}: no prediction for {len(missing)} of {len(keys)} questions of {annotations_csv}, e.g. {missing[:3]}")
    extra = sorted(set(preds) - set(keys))
    if extra:
        raise ValueError(f"{predictions_path}: {len(extra)} keys are not questions of {annotations_csv}, e.g. {extra[:3]}")
    for r in records:
        given = preds[r["key"]].get("answer")
        if given is not None and int(given) != r["answer"]:
            raise ValueError(
                f"{predictions_path}, record {r['key']!r}: 'answer' {given} disagrees with {annotations_csv} (answer {r['answer']})"
            )
    return nextqa_accuracies([preds[k]["prediction"] for k in keys], [r["answer"] for r in records], [r["type"] for r in records])


def evaluate_open_ended_files(predictions_path: str, annotations_path: str) -> dict[str, float]:
    """Open-ended predictions ``{"<question id>": "answer"}`` (or ``{"prediction": "answer", ...}``) against the QA file."""
    from ..data.videoqa import read_open_ended_qa

    records = read_open_ended_qa(annotations_path)
    data = load_json_file(predictions_path, "prediction file", expect=dict, expected="an object mapping question ids to answers")
    missing = [r["key"] for r in records if r["key"] not in data]
    if missing:
        raise ValueError(f"{predictions_path}: no prediction for {len(missing)} questions of {annotations_path}, e.g. {missing[:3]}")
    preds = [data[r["key"]]["prediction"] if isinstance(data[r["key"]], dict) else data[r["key"]] for r in records]
    return open_ended_accuracies(preds, [r["answer"] for r in records], [r["question"] for r in records])


def _is_nextqa_csv(path: str) -> bool:
    if not path.endswith(".csv"):
        return False
    with open(path, encoding="utf-8") as f:
        header = f.readline().strip().split(",")
    return "a0" in header and "type" in header


def evaluate_cli(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="hf-vcr evaluate videoqa",
        description="Score VideoQA predictions: NExT-QA (official prediction json vs the csv) or MSVD-QA / MSRVTT-QA "
        "(question id -> answer json vs the QA json/csv). Prints one JSON object (percent, 2 decimals) on its last line.",
    )
    parser.add_argument("--predictions", required=True, help="NExT-QA: {\"video_qid\": {\"prediction\": int, \"answer\": int}}")
    parser.add_argument("--annotations", required=True, help="NExT-QA val.csv, or an MSVD-QA/MSRVTT-QA {split}_qa.json / csv")
    args = parser.parse_args(argv)
    if not os.path.isfile(args.annotations):
        raise FileNotFoundError(f"annotation file not found: {args.annotations}")
    if _is_nextqa_csv(args.annotations):
        result = evaluate_nextqa_files(args.predictions, args.annotations)
    else:
        result = evaluate_open_ended_files(args.predictions, args.annotations)
    from .vcr import rounded_json

    print(rounded_json(result))
    return 0


__all__ = [
    "nextqa_accuracies",
    "open_ended_accuracies",
    "grounding_overlap",
    "read_nextqa_predictions",
    "evaluate_nextqa_files",
    "evaluate_open_ended_files",
    "evaluate_cli",
]
