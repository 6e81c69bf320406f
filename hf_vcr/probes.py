"""The language-shortcut probes of ARC's section III ("Joint Answering and Explanation for VCR").

- :func:`a2r_accuracy`: rationale accuracy when the query is the right answer alone (Table I, A→R);
  close to QA→R means the rationale model barely uses the question.
- :func:`answer_attention_ratios`: eq. 1, the share of the attention between query and rationale
  tokens that falls on the answer side of the query; the paper reports its median over the
  validation set (0.72-0.86 for HGL, R2C, CCN).
- :func:`evaluate_paraphrased`: Q→A and QA→R on the original validation file and on a paraphrased
  copy supplied by the user (Table III), on the items both files share.

Every function takes any hf_vcr-compatible scorer (``VcrForMultipleChoice``, ``VisualBertForVcr``).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from datasets import Dataset

from .data.collator import VcrCollator
from .data.vcr import _token_objects, load_vcr, render_view, tokenize_view
from .predict.common import predict_logits  # noqa: F401  (one batched inference loop for probes and predict)


def _accuracy(logits: np.ndarray, labels: Sequence[int]) -> float:
    labels = np.asarray(labels)
    valid = labels >= 0
    if not valid.any():
        raise ValueError("no labelled items to score")
    return float(100.0 * (logits.argmax(-1)[valid] == labels[valid]).mean())


def view_accuracy(model, dataset: Dataset, tokenizer, collator: VcrCollator, view: str, *, max_length: int = 64,
                  reference_style: str = "r2c", batch_size: int = 64) -> float:
    """Accuracy (percent) of ``model`` on one VCR view of ``dataset`` (q2a, qa2r, qr2a, a2r)."""
    tokenized = tokenize_view(dataset, tokenizer, view, max_length=max_length, reference_style=reference_style,
                              max_objects=collator.max_objects)
    return _accuracy(predict_logits(model, tokenized, collator, batch_size), tokenized["labels"])


def a2r_accuracy(rationale_model, dataset: Dataset, tokenizer, collator: VcrCollator, **kwargs) -> float:
    """ARC Table I: rationale accuracy (percent) with the right answer alone as the query (no question)."""
    return view_accuracy(rationale_model, dataset, tokenizer, collator, "a2r", **kwargs)


def tokenize_qa2r_segments(dataset: Dataset, tokenizer, *, max_length: int = 64, reference_style: str = "r2c",
                           max_objects: int | None = None) -> Dataset:
    """The QA→R view with ``segment_ids [C, L]`` per token: 0 question, 1 answer, 2 rationale, -1 special tokens."""

    def encode(batch):
        n = len(batch["annot_id"])
        rows = [{k: batch[k][i] for k in batch} for i in range(n)]
        out = {k: [] for k in ("input_ids", "token_type_ids", "attention_mask", "object_ids", "segment_ids", "labels")}
        for row in rows:
            rendered, label = render_view(row, "qa2r", reference_style)
            n_q = len(render_view(row, "q2a", reference_style)[0][0][0])  # rendered question words
            enc = tokenizer([r[0] for r in rendered], [r[2] for r in rendered], is_split_into_words=True,
                            truncation="longest_first", max_length=max_length, return_token_type_ids=True)
            seg, objs = [], []
            for c, (qw, qo, rw, ro) in enumerate(rendered):
                e = enc[c]
                seg.append([-1 if w is None else (2 if s == 1 else (0 if w < n_q else 1)) for w, s in zip(e.word_ids, e.sequence_ids)])
                ids = _token_objects(e, qo, ro)
                objs.append([o if max_objects is None or o < max_objects else -1 for o in ids])
            out["input_ids"].append(enc["input_ids"])
            out["token_type_ids"].append(enc["token_type_ids"])
            out["attention_mask"].append(enc["attention_mask"])
            out["object_ids"].append(objs)
            out["segment_ids"].append(seg)
            out["labels"].append(label)
        return out

    keep = {"annot_id", "boxes", "image_path", "img_fn", "width", "height"}
    return dataset.map(encode, batched=True, batch_size=256, remove_columns=[c for c in dataset.column_names if c not in keep],
                       desc="Tokenizing QA→R with segments")


def attention_ratio(attention: torch.Tensor, segments: torch.Tensor) -> torch.Tensor:
    """ARC eq. 1 for one or more sequences.

    ``attention`` ``[..., L, L]`` (row = attending token, column = attended token; heads already
    reduced), ``segments`` ``[..., L]`` (0 question, 1 answer, 2 rationale). ``W[i, j]`` is the
    attention between query token i and rationale token j, read as rationale token j attending to
    query token i; the ratio is ``Σ_{i ∈ answer} Σ_j W[i, j] / Σ_{i ∈ question ∪ answer} Σ_j W[i, j]``.
    """
    rationale = (segments == 2).to(attention.dtype)
    answer = (segments == 1).to(attention.dtype)
    query = ((segments == 0) | (segments == 1)).to(attention.dtype)
    from_rationale = (attention * rationale.unsqueeze(-1)).sum(-2)  # [..., L]: attention each token receives from rationale tokens
    num = (from_rationale * answer).sum(-1)
    den = (from_rationale * query).sum(-1)
    return num / den.clamp(min=1e-12)


@torch.no_grad()
def answer_attention_ratios(model, dataset: Dataset, tokenizer, collator: VcrCollator, *, layer: int | str = -1,
                            choice: str = "label", max_length: int = 64, reference_style: str = "r2c",
                            batch_size: int = 32) -> np.ndarray:
    """ARC eq. 1 for every item of ``dataset`` under the QA→R model (attention-based models only).

    ``layer``: index into the text encoder's layers or ``"mean"`` (all layers); heads are averaged.
    ``choice``: ``"label"`` (the right rationale's pair) or ``"all"`` (mean over the four pairs).
    Returns one ratio per item; ARC reports the median (:func:`median_answer_attention_ratio`).
    """
    view = tokenize_qa2r_segments(dataset, tokenizer, max_length=max_length, reference_style=reference_style,
                                  max_objects=collator.max_objects)
    model.eval()
    ratios = []
    for start in range(0, len(view), batch_size):
        rows = [view[i] for i in range(start, min(len(view), start + batch_size))]
        batch = collator(rows)
        labels = batch.pop("labels")
        out = model(**batch, output_attentions=True)
        if out.get("attentions") is None:
            raise ValueError(f"{type(model).__name__} returned no attentions: eq. 1 needs an attention-based model "
                             "(with eager attention)")
        B, C, L = batch["input_ids"].shape
        maps = torch.stack([a.float().mean(1) for a in out["attentions"]])  # [layers, B*C, L', L']
        maps = maps.mean(0) if layer == "mean" else maps[int(layer)]
        maps = maps[:, :L, :L].reshape(B, C, L, L)  # text tokens only (VisualBERT appends regions)
        segs = torch.full((B, C, L), -1, dtype=torch.long)
        for b, row in enumerate(rows):
            for c, s in enumerate(row["segment_ids"]):
                segs[b, c, : len(s)] = torch.tensor(s)
        r = attention_ratio(maps, segs)  # [B, C]
        if choice == "label":
            ratios.append(r[torch.arange(B), labels.clamp(min=0)])
        elif choice == "all":
            ratios.append(r.mean(1))
        else:
            raise ValueError(f"choice must be 'label' or 'all', got {choice!r}")
    return torch.cat(ratios).numpy()


def median_answer_attention_ratio(*args, **kwargs) -> float:
    """The median of :func:`answer_attention_ratios` over a split (ARC section III-A)."""
    return float(np.median(answer_attention_ratios(*args, **kwargs)))


def evaluate_paraphrased(answer_model, rationale_model, original: Dataset | str, paraphrased: Dataset | str, tokenizer,
                         collator: VcrCollator, *, images_dir: str | None = None, max_length: int = 64,
                         reference_style: str = "r2c", batch_size: int = 64) -> dict[str, float]:
    """ARC Table III: Q→A and QA→R on the original and on the paraphrased validation items.

    ``original`` / ``paraphrased`` are loaded datasets or paths to VCR-format jsonl files (the
    paraphrased file keeps the annot_ids, images and labels; only the text differs). Both are scored
    on the annot_ids they share; a paraphrased file with no shared item is an error.
    """
    def load(x):
        if isinstance(x, Dataset):
            return x
        import os

        return load_vcr(x, os.path.dirname(os.path.abspath(x)), images_dir)

    orig, para = load(original), load(paraphrased)
    shared = set(orig["annot_id"]) & set(para["annot_id"])
    if not shared:
        raise ValueError(f"the paraphrased file shares no annot_id with the original ({paraphrased!s})")
    orig = orig.filter(lambda r: r["annot_id"] in shared)
    para = para.filter(lambda r: r["annot_id"] in shared)
    kw = dict(max_length=max_length, reference_style=reference_style, batch_size=batch_size)
    out = {"n_items": len(shared)}
    for name, ds in (("original", orig), ("paraphrased", para)):
        if answer_model is not None:
            out[f"{name}_q2a"] = view_accuracy(answer_model, ds, tokenizer, collator, "q2a", **kw)
        if rationale_model is not None:
            out[f"{name}_qa2r"] = view_accuracy(rationale_model, ds, tokenizer, collator, "qa2r", **kw)
    for task in ("q2a", "qa2r"):
        if f"original_{task}" in out:
            out[f"{task}_drop"] = out[f"original_{task}"] - out[f"paraphrased_{task}"]
    return out


def probe_cli(argv=None) -> int:
    """``hf-vcr probe-shortcuts`` / ``scripts/probe_shortcuts.py``: the section III probes on saved models."""
    import argparse
    import json
    import sys

    from transformers import AutoTokenizer

    from .trainers.coupling_data import load_scorer
    from .utils.checkpoints import atomic_write_json

    p = argparse.ArgumentParser(prog="hf-vcr probe-shortcuts", description="ARC section III probes: A→R accuracy, eq. 1 attention ratio, paraphrased validation.")
    p.add_argument("--rationale_model", required=True, help="QA→R model directory (from_pretrained)")
    p.add_argument("--answer_model", help="Q→A model directory, for the paraphrase probe's Q→A")
    p.add_argument("--tokenizer", help="tokenizer name/path (default: the rationale model directory)")
    p.add_argument("--annotations_dir", required=True)
    p.add_argument("--images_dir")
    p.add_argument("--split", default="val", help="split name or jsonl path")
    p.add_argument("--paraphrased", help="a paraphrased copy of the split (VCR jsonl, same annot_ids)")
    p.add_argument("--region_features_dir")
    p.add_argument("--max_length", type=int, default=64)
    p.add_argument("--reference_style", default="r2c")
    p.add_argument("--attention_layer", default="-1", help="layer index or 'mean'")
    p.add_argument("--max_items", type=int)
    p.add_argument("--output", help="write the figures as json here")
    a = p.parse_args(argv)

    tokenizer = AutoTokenizer.from_pretrained(a.tokenizer or a.rationale_model)
    f_r = load_scorer(a.rationale_model)
    f_a = load_scorer(a.answer_model) if a.answer_model else None
    collator = VcrCollator.for_model(f_r.config, pad_token_id=tokenizer.pad_token_id or 0, region_features_dir=a.region_features_dir)
    ds = load_vcr(a.split, a.annotations_dir, a.images_dir)
    if a.max_items:
        ds = ds.select(range(min(a.max_items, len(ds))))
    kw = dict(max_length=a.max_length, reference_style=a.reference_style)
    out = {"qa2r": view_accuracy(f_r, ds, tokenizer, collator, "qa2r", **kw), "a2r": a2r_accuracy(f_r, ds, tokenizer, collator, **kw)}
    layer = a.attention_layer if a.attention_layer == "mean" else int(a.attention_layer)
    try:
        ratios = answer_attention_ratios(f_r, ds, tokenizer, collator, layer=layer, **kw)
        out["answer_attention_percent_median"] = 100.0 * float(np.median(ratios))
    except ValueError as e:  # not an attention model
        out["answer_attention_percent_median"] = None
        print(f"eq. 1 skipped: {e}", file=sys.stderr)
    if a.paraphrased:
        out.update(evaluate_paraphrased(f_a, f_r, ds, a.paraphrased, tokenizer, collator, images_dir=a.images_dir, **kw))
    from .metrics.vcr import rounded_json

    # every figure in percent (the eq. 1 ratio too: the paper's 0.72-0.86 is 72-86 here), two decimals, null for undefined
    printed = rounded_json(out)
    if a.output:
        atomic_write_json(a.output, json.loads(printed))
    print(printed)
    return 0

