"""VideoQA metrics: NExT-QA multiple choice (per question type), MSVD-QA / MSRVTT-QA open-ended
(overall and per question word), and the overlap of a grounded causal clip mask with known clips.

NExT-QA follows the official evaluation (``eval_mc.py`` of doc-doc/NExT-QA): TP questions are counted with
TN, the group accuracies ``acc_c`` / ``acc_t`` / ``acc_d`` pool the questions of CW+CH, TN+TP+TC and DC+DL+DO,
and every value is a percentage.
"""

from __future__ import annotations

import argparse
import os
from collections import Counter
from typing import Sequence

import numpy as np

from ..utils.json_files import load_json_file

NEXTQA_REPORTED_TYPES = ("CW", "CH", "TN", "TC", "DC", "DL", "DO")
NEXTQA_GROUPS = {"acc_c": ("CW", "CH"), "acc_t": ("TN", "TC"), "acc_d": ("DC", "DL", "DO")}
OPEN_ENDED_WORDS = ("what", "who", "how", "when", "where")
NEXTQA_NUM_CHOICES = 5


def _pct(correct: np.ndarray) -> float | None:
    # an accuracy over no question is undefined: None (JSON null), never NaN
    return float(100.0 * correct.mean()) if len(correct) else None


def nextqa_accuracies(predictions: Sequence[int], answers: Sequence[int], types: Sequence[str]) -> dict[str, float]:
    """``accuracy``, one key per type (CW, CH, TN incl. TP, TC, DC, DL, DO) and ``acc_c``/``acc_t``/``acc_d``, in percent.

    A type (or group) with no question is reported as None (undefined; JSON null).
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
    answer vocabulary simply count as wrong, and so does a ``None`` prediction (the "unknown answer" class)."""
    from ..data.videoqa import question_word

    pred = np.array([None if p is None else str(p).strip() for p in predictions], dtype=object)
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
def _prediction_of(value, path: str, key: str):
    """A record of a prediction file: the bare prediction, or ``{"prediction": ..., ...}``."""
    if isinstance(value, dict):
        if "prediction" not in value:
            raise ValueError(f"{path}, record {key!r}: no 'prediction' field (has {sorted(value)})")
        return value["prediction"]
    return value


def _is_index(x) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, bool)


def read_nextqa_predictions(path: str) -> dict[str, dict[str, int]]:
    """The official NExT-QA prediction file: ``{"{video}_{qid}": {"prediction": int, "answer": int}}``; predictions
    (and given answers) must be option indices in ``[0, 5)``."""
    data = load_json_file(path, "prediction file", expect=dict, expected="an object mapping '{video}_{qid}' to predictions")
    out = {}
    for key, value in data.items():
        pred = _prediction_of(value, path, key)
        if isinstance(pred, float) and pred.is_integer():
            pred = int(pred)
        if not _is_index(pred) or not 0 <= pred < NEXTQA_NUM_CHOICES:
            raise ValueError(f"{path}, record {key!r}: prediction must be an option index in [0, {NEXTQA_NUM_CHOICES}), got {pred!r}")
        out[key] = {"prediction": int(pred)}
        if isinstance(value, dict) and "answer" in value:
            given = value["answer"]
            if not _is_index(given) or not 0 <= given < NEXTQA_NUM_CHOICES:
                raise ValueError(f"{path}, record {key!r}: answer must be an option index in [0, {NEXTQA_NUM_CHOICES}), got {given!r}")
            out[key]["answer"] = int(given)
    if not out:
        raise ValueError(f"{path}: no predictions (an empty object)")
    return out


def evaluate_nextqa_files(predictions_path: str, annotations_csv: str) -> dict[str, float]:
    from ..data.videoqa import read_nextqa_csv

    records = read_nextqa_csv(annotations_csv)
    preds = read_nextqa_predictions(predictions_path)
    keys = [r["key"] for r in records]
    missing = [k for k in keys if k not in preds]
    if missing:
        raise ValueError(f"{predictions_path}: no prediction for {len(missing)} of {len(keys)} questions of {annotations_csv}, e.g. {missing[:3]}")
    known = set(keys)
    extra = [k for k in preds if k not in known]
    if extra:
        raise ValueError(f"{predictions_path}, record {extra[0]!r}: not a question of {annotations_csv} ({len(extra)} such records)")
    for r in records:
        given = preds[r["key"]].get("answer")
        if given is not None and given != r["answer"]:
            raise ValueError(
                f"{predictions_path}, record {r['key']!r}: 'answer' {given} disagrees with {annotations_csv} (answer {r['answer']})"
            )
    return nextqa_accuracies([preds[k]["prediction"] for k in keys], [r["answer"] for r in records], [r["type"] for r in records])


def read_answer_vocab(path: str) -> list[str]:
    """An answer-word list for id predictions: a JSON array of strings, or one answer per line (e.g. MSVD-QA's
    ``answer_set.txt``). Id ``k`` means the ``k - id_base``-th entry."""
    from ..data.videoqa import VideoQaFormatError, read_answer_set

    if not path.lower().endswith(".json"):
        return read_answer_set(path)
    words = load_json_file(path, "answer vocabulary", VideoQaFormatError, list, "a JSON array of answer strings")
    for i, w in enumerate(words):
        if not isinstance(w, str):
            raise VideoQaFormatError(f"{path}, entry {i}: an answer must be a string, got {w!r}")
    dup = [w for w, n in Counter(words).items() if n > 1]
    if dup:
        raise VideoQaFormatError(f"{path}: duplicate answers {dup[:5]}")
    return [w.strip() for w in words]


def decode_answer_ids(predictions: dict, path: str, vocab: Sequence[str], id_base: int = 0, unknown_id: int | None = None) -> dict:
    """``{key: answer string or None}`` from ``{key: id}`` (or ``{key: {"prediction": id, ...}}``): id ``k`` is
    ``vocab[k - id_base]``, ``unknown_id`` is the "unknown answer" class (None: counts wrong)."""
    out = {}
    for key, value in predictions.items():
        pred = _prediction_of(value, path, key)
        if not _is_index(pred):
            raise ValueError(f"{path}, record {key!r}: with --answer-vocab a prediction must be an answer id (int), got {pred!r}")
        if unknown_id is not None and pred == unknown_id:
            out[key] = None
        elif id_base <= pred < id_base + len(vocab):
            out[key] = vocab[pred - id_base]
        else:
            hint = "" if unknown_id is None else f" or the unknown id {unknown_id}"
            raise ValueError(f"{path}, record {key!r}: answer id {pred} is outside the vocabulary's ids "
                             f"[{id_base}, {id_base + len(vocab)}){hint}")
    return out


def evaluate_open_ended_files(
    predictions_path: str, annotations_path: str, answer_vocab: Sequence[str] | None = None, id_base: int = 0,
    unknown_id: int | None = None,
) -> dict[str, float]:
    """Open-ended predictions ``{"<question id>": "answer"}`` (or ``{"prediction": "answer", ...}``) against the QA
    file. With ``answer_vocab`` the predictions are answer ids instead (see :func:`decode_answer_ids`). Every
    question needs exactly one prediction, and every prediction must name a question of the file."""
    from ..data.videoqa import read_open_ended_qa

    records = read_open_ended_qa(annotations_path)
    data = load_json_file(predictions_path, "prediction file", expect=dict, expected="an object mapping question ids to answers")
    if answer_vocab is not None:
        preds = decode_answer_ids(data, predictions_path, answer_vocab, id_base, unknown_id)
    else:
        preds = {}
        for key, value in data.items():
            pred = _prediction_of(value, predictions_path, key)
            if not isinstance(pred, str):
                raise ValueError(f"{predictions_path}, record {key!r}: prediction must be an answer string, got {pred!r}; "
                                 "for answer ids pass --answer-vocab FILE (and --answer-id-base / --unknown-answer-id)")
            preds[key] = pred
    missing = [r["key"] for r in records if r["key"] not in preds]
    if missing:
        raise ValueError(f"{predictions_path}: no prediction for {len(missing)} of {len(records)} questions of {annotations_path}, e.g. {missing[:3]}")
    known = {r["key"] for r in records}
    extra = [k for k in preds if k not in known]
    if extra:
        raise ValueError(f"{predictions_path}, record {extra[0]!r}: not a question id of {annotations_path} ({len(extra)} such records)")
    return open_ended_accuracies([preds[r["key"]] for r in records], [r["answer"] for r in records], [r["question"] for r in records])


def _is_nextqa_csv(path: str) -> bool:
    """A csv with the five option columns is NExT-QA (its reader then names any other missing column)."""
    if not path.lower().endswith(".csv"):
        return False
    with open(path, "rb") as f:
        header = f.readline().decode("utf-8-sig", errors="replace").strip().split(",")
    return all(c in [h.strip() for h in header] for c in ("a0", "a1", "a2", "a3", "a4"))


def evaluate_cli(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="hf-vcr evaluate videoqa",
        description="Score VideoQA predictions: NExT-QA (official prediction json vs the csv) or MSVD-QA / MSRVTT-QA "
        "(question id -> answer json vs the QA json/csv). Prints one JSON object (percent, 2 decimals) on its last line: "
        "NExT-QA: accuracy, CW CH TN(+TP) TC DC DL DO and acc_c/acc_t/acc_d as eval_mc.py; open-ended: accuracy and "
        "acc_what/who/how/when/where.",
    )
    parser.add_argument("--predictions", required=True, help="NExT-QA: {\"video_qid\": {\"prediction\": int, \"answer\": int}}; "
                        "open-ended: {\"qid\": \"answer\"} or {\"qid\": {\"prediction\": ...}}")
    parser.add_argument("--annotations", required=True, help="NExT-QA val.csv, or an MSVD-QA/MSRVTT-QA {split}_qa.json / csv")
    parser.add_argument("--answer-vocab", default=None, help="open-ended predictions given as answer ids: the answer list "
                        "(one per line, or a JSON array) the ids index")
    parser.add_argument("--answer-id-base", type=int, default=0, help="the id of the vocabulary's first answer (default 0)")
    parser.add_argument("--unknown-answer-id", type=int, default=None, help="the id that means 'unknown answer' "
                        "(scored wrong), if it is not an entry of the vocabulary")
    args = parser.parse_args(argv)
    if not os.path.isfile(args.annotations):
        raise FileNotFoundError(f"annotation file not found: {args.annotations}")
    if _is_nextqa_csv(args.annotations):
        if args.answer_vocab is not None:
            parser.error("--answer-vocab is for open-ended predictions; NExT-QA predictions are option indices")
        result = evaluate_nextqa_files(args.predictions, args.annotations)
    else:
        vocab = read_answer_vocab(args.answer_vocab) if args.answer_vocab is not None else None
        result = evaluate_open_ended_files(args.predictions, args.annotations, vocab, args.answer_id_base, args.unknown_answer_id)
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
    "read_answer_vocab",
    "decode_answer_ids",
    "evaluate_cli",
]
