"""SOrT metrics (Dharur et al., NAACL 2021, section 4.1 and appendix A.1.1).

Consistency: the four quadrants over <reasoning question, sub-question> pairs (R✓S✓, R✓S✗,
R✗S✓, R✗S✗) and ``consistency = R✓S✓ / (R✓S✓ + R✓S✗)`` (eq. 4), in percent.

Ranking: for each <image, reasoning question> the perception questions (sub-questions are
*relevant*, irrelevant questions are not) are ranked by a score (SOrT: the cosine similarity
of their Grad-CAM vector with the reasoning question's), higher first:

* MP@1: fraction of sets whose top-ranked question is relevant;
* ranking accuracy: fraction of sets whose relevant questions are all ranked above every
  irrelevant one;
* MRR: mean over sets of ``1 / rank`` of the highest-ranked relevant question;
* WPR: a "parallel list" keeps the ranked items but moves the relevant ones first (each group in
  its ranked order); over the ``n`` positions where the two lists hold different items, the mean of
  ``|α - α'|`` (their scores); 0 for a set ranked right; then averaged over the sets (eq. 6-7).

Ties in score are broken pessimistically (an irrelevant question ranks above a relevant one with
the same score), so constant scores earn no credit. :func:`ranking_metrics` reports the dataset means
in percent, as Table 1 does (WPR included: 52.75 for Pythia); :func:`ranking_metrics_one` gives one
set's values as fractions, as in the appendix's worked examples. Sets without any relevant question
are skipped and counted.
"""

from __future__ import annotations

import argparse
import os
from typing import Iterable, Sequence

import numpy as np

__all__ = [
    "rank_order",
    "ranking_metrics_one",
    "ranking_metrics",
    "quadrants",
    "consistency_metrics",
    "vqa_accuracy",
    "read_jsonl",
    "ranking_cli",
    "consistency_cli",
]

QUADRANT_KEYS = ("r_right_s_right", "r_right_s_wrong", "r_wrong_s_right", "r_wrong_s_wrong")


# ------------------------------------------------------------------------------ ranking
def rank_order(scores: Sequence[float], relevant: Sequence[int]) -> np.ndarray:
    """Indices from highest to lowest score; ties put irrelevant items first (pessimistic)."""
    s = np.asarray(scores, dtype=np.float64)
    r = np.asarray(relevant, dtype=np.int64)
    return np.lexsort((r, -s))  # primary key -score, then relevant (0 before 1)


def ranking_metrics_one(scores: Sequence[float], relevant: Sequence[int]) -> dict[str, float]:
    """MP@1, ranking accuracy, reciprocal rank and WPR of one ranked set."""
    s = np.asarray(scores, dtype=np.float64)
    r = np.asarray(relevant, dtype=np.int64)
    if s.shape != r.shape or s.ndim != 1 or len(s) == 0:
        raise ValueError(f"scores and relevant must be non-empty lists of the same length, got {len(s)} and {len(r)}")
    if not np.isin(r, (0, 1)).all():
        raise ValueError("relevant must hold 0 or 1")
    if not r.any():
        raise ValueError("a set needs at least one relevant question")
    order = rank_order(s, r)
    ranked_rel = r[order]
    first_rel = int(np.argmax(ranked_rel == 1))
    n_rel = int(r.sum())
    parallel = np.concatenate([order[ranked_rel == 1], order[ranked_rel == 0]])
    differ = order != parallel
    wpr = float(np.abs(s[order[differ]] - s[parallel[differ]]).sum() / differ.sum()) if differ.any() else 0.0
    return {
        "mp1": float(ranked_rel[0] == 1),
        "ranking_accuracy": float(ranked_rel[:n_rel].all()),
        "mrr": 1.0 / (first_rel + 1),
        "wpr": wpr,
    }


def ranking_metrics(score_lists: Iterable[Sequence[float]], relevant_lists: Iterable[Sequence[int]]) -> dict[str, float]:
    """Dataset means of MP@1, ranking accuracy, MRR and WPR in percent (×100, as SOrT's Table 1); ``n`` sets
    scored, ``n_skipped`` without a relevant item."""
    totals = {"mp1": 0.0, "ranking_accuracy": 0.0, "mrr": 0.0, "wpr": 0.0}
    n = skipped = 0
    for scores, relevant in zip(score_lists, relevant_lists):
        if len(relevant) and not any(int(x) == 1 for x in relevant):
            skipped += 1
            continue
        for k, v in ranking_metrics_one(scores, relevant).items():
            totals[k] += v
        n += 1
    if n == 0:
        raise ValueError("no set with a relevant question to rank")
    out = {k: 100.0 * v / n for k, v in totals.items()}
    out["n"] = n
    out["n_skipped"] = skipped
    return out


# -------------------------------------------------------------------------- consistency
def quadrants(reasoning_correct: Sequence[bool], sub_correct: Sequence[Sequence[bool]]) -> dict[str, float]:
    """Percent of <reasoning, sub-question> pairs in each quadrant (R✓S✓, R✓S✗, R✗S✓, R✗S✗)."""
    if len(reasoning_correct) != len(sub_correct):
        raise ValueError("reasoning_correct and sub_correct must have one entry per reasoning question")
    counts = dict.fromkeys(QUADRANT_KEYS, 0)
    for r, subs in zip(reasoning_correct, sub_correct):
        for s in subs:
            key = ("r_right" if r else "r_wrong") + ("_s_right" if s else "_s_wrong")
            counts[key] += 1
    total = sum(counts.values())
    if total == 0:
        raise ValueError("no <reasoning question, sub-question> pair to count")
    return {k: 100.0 * v / total for k, v in counts.items()}


def consistency_metrics(reasoning_correct: Sequence[bool], sub_correct: Sequence[Sequence[bool]]) -> dict:
    """``{"quadrants": {...}, "consistency": R✓S✓ / (R✓S✓ + R✓S✗)}`` in percent (eq. 4; None when no reasoning
    question is answered right), plus reasoning accuracy."""
    q = quadrants(reasoning_correct, sub_correct)
    denom = q["r_right_s_right"] + q["r_right_s_wrong"]
    return {
        "quadrants": q,
        "consistency": 100.0 * q["r_right_s_right"] / denom if denom > 0 else None,  # undefined: null, never NaN
        "reasoning_accuracy": 100.0 * float(np.mean([bool(r) for r in reasoning_correct])),
        "n_pairs": int(sum(len(s) for s in sub_correct)),
    }


def vqa_accuracy(predictions: Sequence[str], soft_scores: Sequence[dict[str, float]]) -> float:
    """VQA accuracy in percent: the mean soft score ``min(#humans / 3, 1)`` of the predicted answers."""
    if len(predictions) != len(soft_scores) or not predictions:
        raise ValueError("need one soft-score dict per prediction, and at least one")
    return 100.0 * float(np.mean([s.get(p, 0.0) for p, s in zip(predictions, soft_scores)]))


# ---------------------------------------------------------------------------------- CLI
def read_jsonl(path: str, required: dict[str, type]) -> list[dict]:
    """Read a jsonl file strictly (UTF-8, no repeated keys, no NaN); errors name the file, the line and what is wrong."""
    from ..utils.json_files import decode_utf8, loads_strict

    if not os.path.isfile(path):
        raise FileNotFoundError(f"file not found: {path}")
    with open(path, "rb") as f:
        raw = f.read()
    rows = []
    for line_no, line in enumerate(decode_utf8(raw, path).splitlines(), start=1):
        if not line.strip():
            continue
        row = loads_strict(line, path, ValueError, line_no)
        if not isinstance(row, dict):
            raise ValueError(f"{path}, line {line_no}: expected a JSON object, got {type(row).__name__}")
        for key, kind in required.items():
            if key not in row:
                raise ValueError(f"{_where(path, {**row, '_line': line_no})}: missing key {key!r}")
            if not isinstance(row[key], kind):
                raise ValueError(f"{_where(path, {**row, '_line': line_no})}: {key!r} must be a {kind.__name__}, got {type(row[key]).__name__}")
        row["_line"] = line_no
        rows.append(row)
    if not rows:
        raise ValueError(f"{path}: no records (empty file)")
    return rows


def _where(path: str, row: dict) -> str:
    return f"{path}, line {row['_line']}" + (f" ({row['id']})" if "id" in row else "")


def ranking_cli(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="hf-vcr evaluate ranking",
        description="MP@1, ranking accuracy, MRR and WPR (SOrT appendix A.1.1) of ranked perception questions.",
    )
    parser.add_argument("--scores", required=True, help='jsonl: {"id": ..., "scores": [float, ...], "relevant": [0|1, ...]} per line')
    args = parser.parse_args(argv)
    rows = read_jsonl(args.scores, {"scores": list, "relevant": list})
    for row in rows:
        if len(row["scores"]) != len(row["relevant"]) or not row["scores"]:
            raise ValueError(f"{_where(args.scores, row)}: 'scores' and 'relevant' must be non-empty and of equal length")
        if not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in row["scores"]):
            raise ValueError(f"{_where(args.scores, row)}: 'scores' must be numbers")
        if not all(x in (0, 1) for x in row["relevant"]):
            raise ValueError(f"{_where(args.scores, row)}: 'relevant' must hold 0 or 1")
    result = ranking_metrics([r["scores"] for r in rows], [r["relevant"] for r in rows])
    from ..utils.json_files import dumps_strict

    print(dumps_strict(result, 4))
    return 0


def consistency_cli(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="hf-vcr evaluate consistency",
        description="Quadrants and consistency (SOrT eq. 4), in percent.",
    )
    parser.add_argument(
        "--predictions", required=True, help='jsonl: {"id": ..., "reasoning_correct": bool, "sub_correct": [bool, ...]} per line'
    )
    args = parser.parse_args(argv)
    rows = read_jsonl(args.predictions, {"reasoning_correct": bool, "sub_correct": list})
    for row in rows:
        if not all(isinstance(x, bool) for x in row["sub_correct"]):
            raise ValueError(f"{_where(args.predictions, row)}: 'sub_correct' must be a list of booleans")
    result = consistency_metrics([r["reasoning_correct"] for r in rows], [r["sub_correct"] for r in rows])
    from ..utils.json_files import dumps_strict

    print(dumps_strict(result, 4))
    return 0
