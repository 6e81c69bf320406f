"""Zero-shot localized multiple choice by image-text matching (LSKD, Park et al., 2023, section 4).

A candidate text is scored by the student's ITM head, P(match | image with regions drawn, text);
the candidate with the highest score is chosen. For VCR the objects referenced in the item are
renumbered ``0..n-1`` in drawing order (ascending VCR index), drawn in the colours of those ids and named
``[k]`` in the text, as the released evaluation does (so an item never shows an id or colour the student did not
see in training, where ids are ``0..n-1`` too): Q→A scores ``"Q Answer: A_i"``,
QA→R scores ``"Q Answer: A_i Rationale: R_j"`` (for every answer, so Q→AR can use the rationale
chosen for the *predicted* answer). Any "image + candidate texts" set (Visual7W telling,
SNLI-VE style, the embedded localized set) uses the same :class:`ItmScorer`.

With an ``accelerate.Accelerator`` the items are split across processes and the scores gathered
back in order (each item scored exactly once).
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Iterable, Sequence

import numpy as np
import torch
from PIL import Image

from ..data.lskd import lskd_text
from ..data.vcr_format import resolve_under
from ..data.regions import draw_vcr_item, drawing_order_ids, localize, refs_to_text, vcr_mentioned


class ItmScorer:
    """Scores (image, text) pairs with an ``LskdStudentModel``: P(match) from the ITM head (``head="itm"``, the
    default and the paper's zero-shot scorer) or the ITC cosine similarity (``head="itc"``)."""

    def __init__(self, model, tokenizer, image_processor, max_length: int = 128, batch_size: int = 32, device=None, head: str = "itm"):
        if head not in ("itm", "itc"):
            raise ValueError(f"head must be 'itm' (matching probability) or 'itc' (contrastive similarity), got {head!r}")
        self.head = head
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        self.max_length = max_length
        self.batch_size = batch_size
        self.device = device or next(model.parameters()).device

    @torch.no_grad()
    def image_embeds(self, images: Sequence[Image.Image]) -> torch.Tensor:
        pv = self.image_processor(list(images), return_tensors="pt")["pixel_values"].to(self.device)
        return self.model.encode_image(pv)

    @torch.no_grad()
    def score_embeds(self, image_embeds: torch.Tensor, texts: Sequence[str]) -> np.ndarray:
        enc = self.tokenizer(list(texts), padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
        if self.head == "itc":
            img = self.model.image_feats(self.model.vision_features(image_embeds=image_embeds))
            txt = self.model.text_feats(enc["input_ids"].to(self.device), enc["attention_mask"].to(self.device))
            return torch.einsum("bqd,bd->bq", img, txt).max(dim=1).values.float().cpu().numpy()
        return self.model.match_probability(
            enc["input_ids"].to(self.device), enc["attention_mask"].to(self.device), image_embeds=image_embeds
        ).float().cpu().numpy()

    def score_candidates(self, image: Image.Image, candidates: Sequence[str]) -> np.ndarray:
        """P(match) of each candidate text with one image (the image is encoded once)."""
        emb = self.image_embeds([image])
        out = []
        for i in range(0, len(candidates), self.batch_size):
            chunk = candidates[i : i + self.batch_size]
            out.append(self.score_embeds(emb.expand(len(chunk), -1, -1), chunk))
        return np.concatenate(out)


def _distributed_map(fn, items: list, accelerator=None) -> list:
    if accelerator is None or accelerator.num_processes == 1:
        return [fn(x) for x in items]
    from accelerate.utils import gather_object

    indexed = list(enumerate(items))
    with accelerator.split_between_processes(indexed) as mine:
        local = [(i, fn(x)) for i, x in mine]
    gathered = gather_object(local)
    seen = {}
    for i, r in gathered:
        seen.setdefault(i, r)  # split_between_processes never pads, but stay safe against duplicates
    return [seen[i] for i in range(len(items))]


def multiple_choice_accuracy(scorer: ItmScorer, items: Iterable[tuple[Image.Image, Sequence[str], int]], accelerator=None) -> dict:
    """Accuracy (percent) of choosing the highest-scoring candidate; items are ``(image, candidates, label)``."""
    items = list(items)
    if not items:
        raise ValueError("no items to evaluate")
    scores = _distributed_map(lambda it: scorer.score_candidates(it[0], list(it[1])), items, accelerator)
    preds = [int(np.argmax(s)) for s in scores]
    labels = [int(it[2]) for it in items]
    n_choices = [len(it[1]) for it in items]
    return {
        "accuracy": 100.0 * float(np.mean([p == l for p, l in zip(preds, labels)])),
        "chance": 100.0 * float(np.mean([1.0 / n for n in n_choices])),
        "n": len(items),
        "predictions": preds,
    }


def localized_mc_items(mc_jsonl: str, images_dir: str) -> list[tuple[Image.Image, list[str], int]]:
    """Items of an LSKD-format MC file (``image``, ``references``, ``question``, ``choices``, ``label``), regions drawn."""
    items = []
    with open(mc_jsonl, encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                regions = {int(r["name"]): r["boxes"] for r in row["references"]}
                image = Image.open(resolve_under(images_dir, row["image"], "image", f"{mc_jsonl}, line {line_no}")).convert("RGB")
                choices, label = row["choices"], int(row["label"])
            except (json.JSONDecodeError, KeyError, TypeError, ValueError, OSError) as e:
                raise ValueError(f"{mc_jsonl}, line {line_no}: bad multiple-choice item ({type(e).__name__}: {e})") from None
            if not 0 <= label < len(choices):
                raise ValueError(f"{mc_jsonl}, line {line_no}: label {label} out of range for {len(choices)} choices")
            drawn, texts, _ = localize(image, regions, [row["question"], *choices], mentioned=row.get("region"), renumber=True)
            items.append((drawn, [lskd_text(texts[0], t) for t in texts[1:]], label))
    return items


def itm_pair_accuracy(scorer: ItmScorer, rows: Sequence[dict], negatives: Sequence[str]) -> dict:
    """Binary ITM accuracy on (image, true text) = match and (image, negative text) = no match, at P = 0.5
    (chance 50%), and the pairwise accuracy P(match | true) > P(match | negative) (chance 50%)."""
    pos, neg, ranked = [], [], []
    for (image, text), bad in zip(rows, negatives):
        p = scorer.score_candidates(image, [text, bad])
        pos.append(p[0] > 0.5)
        neg.append(p[1] <= 0.5)
        ranked.append(p[0] > p[1])
    return {"itm_accuracy": 100.0 * float(np.mean(pos + neg)), "itm_pairwise_accuracy": 100.0 * float(np.mean(ranked)),
            "n_pairs": 2 * len(pos)}


def vcr_item_scores(scorer: ItmScorer, row: dict) -> tuple[np.ndarray, np.ndarray]:
    """Answer scores ``[4]`` and rationale scores ``[4 answers, 4 rationales]`` for one ``load_vcr`` row.

    The referenced objects are renumbered ``0..n-1`` in drawing order, in the image and in every text alike.
    """
    id_map = drawing_order_ids(vcr_mentioned(row))
    image = draw_vcr_item(row, id_map=id_map)
    q = refs_to_text(row["question"], row["question_refs"], id_map)
    answers = [refs_to_text(w, r, id_map) for w, r in zip(row["answer_choices"], row["answer_choices_refs"])]
    rationales = [refs_to_text(w, r, id_map) for w, r in zip(row["rationale_choices"], row["rationale_choices_refs"])]
    emb = scorer.image_embeds([image])
    a_scores = scorer.score_embeds(emb.expand(len(answers), -1, -1), [lskd_text(q, a) for a in answers])
    qar = [lskd_text(q, a, r) for a in answers for r in rationales]
    r_scores = scorer.score_embeds(emb.expand(len(qar), -1, -1), qar).reshape(len(answers), len(rationales))
    return a_scores, r_scores


def evaluate_vcr_zero_shot(scorer: ItmScorer, rows: Sequence[dict], accelerator=None) -> dict[str, float]:
    """Zero-shot VCR Q→A, QA→R and Q→AR (percent) from ITM scores with the referenced regions drawn."""
    from .vcr import accuracies_from_scores

    rows = list(rows)
    scores = _distributed_map(lambda r: vcr_item_scores(scorer, r), rows, accelerator)
    a = np.stack([s[0] for s in scores])
    r = np.stack([s[1] for s in scores])
    return accuracies_from_scores(a, r, [row["answer_label"] for row in rows], [row["rationale_label"] for row in rows])


def main(argv: Sequence[str] | None = None) -> int:
    """``hf-vcr evaluate zero-shot --model DIR --images-dir IMAGES (--vcr val.jsonl | --mc mc.jsonl)``: zero-shot
    accuracy of a saved LSKD student (or any ``Blip2ForImageTextRetrieval``-style model with its tokenizer and image
    processor). Prints one JSON object on its last line: VCR's ``q2a``, ``qa2r``, ``q2ar`` and/or ``mc_accuracy``,
    ``mc_chance``, ``mc_n`` (percent)."""
    from transformers import AutoImageProcessor, AutoModel, AutoTokenizer

    import hf_vcr  # noqa: F401  (registers the model types)

    parser = argparse.ArgumentParser(prog="hf-vcr evaluate zero-shot", description=main.__doc__)
    parser.add_argument("--model", required=True, help="saved LSKD student (with tokenizer and image processor)")
    parser.add_argument("--vcr", help="labelled VCR jsonl (e.g. val.jsonl), with its images and metadata under --images-dir")
    parser.add_argument("--mc", help="LSKD-format multiple-choice jsonl")
    parser.add_argument("--images-dir", required=True)
    parser.add_argument("--head", choices=("itm", "itc"), default="itm", help="score candidates with the ITM head or ITC similarity")
    parser.add_argument("--limit", type=int, default=None, help="evaluate the first N items only")
    args = parser.parse_args(argv)
    if not (args.vcr or args.mc):
        parser.error("give --vcr and/or --mc")
    model = AutoModel.from_pretrained(args.model)
    scorer = ItmScorer(model, AutoTokenizer.from_pretrained(args.model), AutoImageProcessor.from_pretrained(args.model), head=args.head)
    result: dict = {}
    if args.vcr:
        from ..data.vcr import load_vcr

        split = os.path.splitext(os.path.basename(args.vcr))[0]
        ds = load_vcr(split, os.path.dirname(os.path.abspath(args.vcr)), images_dir=args.images_dir)
        rows = [ds[i] for i in range(len(ds) if args.limit is None else min(args.limit, len(ds)))]
        result.update(evaluate_vcr_zero_shot(scorer, rows))
    if args.mc:
        items = localized_mc_items(args.mc, args.images_dir)[: args.limit]
        res = multiple_choice_accuracy(scorer, items)
        result.update({"mc_accuracy": res["accuracy"], "mc_chance": res["chance"], "mc_n": res["n"]})
    from .vcr import rounded_json

    print(rounded_json(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
