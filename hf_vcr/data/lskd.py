"""The LSKD localized commonsense corpus (Park et al., 2023) as ``datasets.Dataset``, and its collator.

A corpus line (jsonl) has ``image`` (relative to an images root), ``region`` (the ids the
QAR is about), ``region_all`` (every id shown), ``references`` (``[{"name": "4", "boxes":
[[x1, y1, x2, y2]], ...}]``), ``question`` / ``answer`` / ``rationale`` (token lists with
VCR-style int-list region references) and ``prediction`` (the critic's score). Critic
training data adds ``label`` (annotator verdicts), ``qa_score`` and ``r_score``. Boxes may
instead come from a separate region file whose rows are
``{"image": ..., "region_locations": {"<id>": {"boxes": [[...]], ...}}}``.

``load_lskd`` keeps the lines whose critic score is at least ``threshold`` (0.8, the
paper's value). The text a model sees is ``"Q Answer: A Rationale: R"`` (or ``"Q Answer: A"``)
with regions named ``[k]``; :class:`LskdCollator` draws the regions into the image
(:mod:`hf_vcr.data.regions`) and, in training, augments as the released data pipeline does.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
from typing import Any, Iterator, Mapping, Sequence

import torch
from datasets import Dataset, Features, Sequence as HFSequence, Value
from PIL import Image

from ..losses.lskd import critic_label_from_verdicts
from .references import split_tokens
from .regions import RegionAugmenter, localize

DEFAULT_THRESHOLD = 0.8
TEXT_FIELDS = ("question", "answer", "rationale")


class LskdFormatError(ValueError):
    """A corpus line that cannot be used; the message names the file, the line and the problem."""


def _where(path: str, line_no: int) -> str:
    return f"{path}, line {line_no}"


def _check_tokens(tokens: Any, field: str, where: str) -> None:
    if not isinstance(tokens, list) or not tokens:
        raise LskdFormatError(f"{where}: {field!r} must be a non-empty token list, got {type(tokens).__name__}")
    for tok in tokens:
        if isinstance(tok, str):
            continue
        if not isinstance(tok, list) or not tok or not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in tok):
            raise LskdFormatError(f"{where}: {field!r} has a token that is neither a word nor a list of region ids: {tok!r}")


def _parse_boxes(boxes: Any, rid: Any, where: str) -> list[list[float]]:
    if not isinstance(boxes, list) or not boxes:
        raise LskdFormatError(f"{where}: region {rid}: 'boxes' must be a non-empty list of [x1, y1, x2, y2]")
    out = []
    for b in boxes:
        if not isinstance(b, list) or len(b) < 4 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in b[:4]):
            raise LskdFormatError(f"{where}: region {rid}: bad box {b!r} (need [x1, y1, x2, y2])")
        if not all(math.isfinite(v) for v in b[:4]):
            raise LskdFormatError(f"{where}: region {rid}: box {b!r} has a NaN or infinite coordinate")
        if b[2] < b[0] or b[3] < b[1]:
            raise LskdFormatError(f"{where}: region {rid}: box {b!r} has x2 < x1 or y2 < y1")
        out.append([float(v) for v in b[:4]])
    return out


def _regions_from_references(references: Any, where: str) -> dict[int, list[list[float]]]:
    if not isinstance(references, list):
        raise LskdFormatError(f"{where}: 'references' must be a list")
    regions = {}
    for ref in references:
        if not isinstance(ref, dict) or "name" not in ref:
            raise LskdFormatError(f"{where}: a reference must be an object with 'name' and 'boxes', got {ref!r}")
        try:
            rid = int(ref["name"])
        except (TypeError, ValueError):
            raise LskdFormatError(f"{where}: reference name {ref['name']!r} is not a region id") from None
        if rid < 0:
            raise LskdFormatError(f"{where}: reference name {ref['name']!r} is a negative region id")
        regions[rid] = _parse_boxes(ref.get("boxes"), rid, where)
    return regions


def read_region_file(path: str) -> dict[str, dict[int, list[list[float]]]]:
    """``image -> {region id -> boxes}`` from a region file (one JSON object per line)."""
    out: dict[str, dict[int, list[list[float]]]] = {}
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            where = _where(path, line_no)
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise LskdFormatError(f"{where}: malformed JSON ({e.msg})") from None
            if not isinstance(row, dict) or "image" not in row or not isinstance(row.get("region_locations"), dict):
                raise LskdFormatError(f"{where}: a region row needs 'image' and a 'region_locations' object")
            regions = out.setdefault(row["image"], {})
            for rid, loc in row["region_locations"].items():
                try:
                    key = int(rid)
                except ValueError:
                    raise LskdFormatError(f"{where}: region id {rid!r} is not an integer") from None
                if key < 0:
                    raise LskdFormatError(f"{where}: region id {rid!r} is negative")
                if not isinstance(loc, dict):
                    raise LskdFormatError(f"{where}: region {rid}: location must be an object with 'boxes'")
                regions[key] = _parse_boxes(loc.get("boxes"), rid, where)
    return out


def load_lskd_object(line: str, path: str, line_no: int) -> dict:
    """One corpus line as its JSON object (raises :class:`LskdFormatError` naming file and line)."""
    where = _where(path, line_no)
    try:
        item = json.loads(line)
    except json.JSONDecodeError as e:
        raise LskdFormatError(f"{where}: malformed JSON ({e.msg})") from None
    if not isinstance(item, dict):
        raise LskdFormatError(f"{where}: a corpus line must be a JSON object")
    return item


def parse_lskd_line(
    line: str,
    path: str,
    line_no: int,
    region_index: Mapping[str, Mapping[int, list]] | None = None,
    require_rationale: bool = True,
) -> dict:
    """Validate one corpus line and return its record (raises :class:`LskdFormatError` naming file and line)."""
    return parse_lskd_item(load_lskd_object(line, path, line_no), path, line_no, region_index, require_rationale)


def parse_lskd_item(
    item: dict,
    path: str,
    line_no: int,
    region_index: Mapping[str, Mapping[int, list]] | None = None,
    require_rationale: bool = True,
) -> dict:
    """Validate the JSON object of one corpus line (:func:`load_lskd_object`) and return its record; the object
    itself is not changed."""
    where = _where(path, line_no)
    fields = ["image", "question", "answer"] + (["rationale"] if require_rationale else [])
    missing = [k for k in fields if k not in item]
    if missing:
        raise LskdFormatError(f"{where}: missing field(s) {missing}")
    if not isinstance(item["image"], str) or not item["image"]:
        raise LskdFormatError(f"{where}: 'image' must be a relative path")
    for field in TEXT_FIELDS:
        if field in item:
            _check_tokens(item[field], field, where)
    if region_index is not None:
        if item["image"] not in region_index:
            raise LskdFormatError(f"{where}: image {item['image']!r} has no row in the region file")
        regions = {int(k): v for k, v in region_index[item["image"]].items()}
    elif "references" in item:
        regions = _regions_from_references(item["references"], where)
    else:
        raise LskdFormatError(f"{where}: no 'references' and no region file: the region boxes are unknown")
    split = {f: split_tokens(item[f]) for f in TEXT_FIELDS if f in item}  # (words, refs) per text field
    used = sorted({i for _, refs in split.values() for ref in refs for i in ref})
    unknown = [i for i in used if i not in regions]
    if unknown:
        raise LskdFormatError(f"{where}: region reference(s) {unknown} have no box (regions: {sorted(regions)})")
    mentioned = item.get("region")
    if mentioned is None:
        mentioned = used
    if not isinstance(mentioned, list) or any(not isinstance(i, int) or isinstance(i, bool) or i not in regions for i in mentioned):
        raise LskdFormatError(f"{where}: 'region' must list ids that have boxes, got {mentioned!r}")
    shown_all = item.get("region_all")
    if shown_all is None:
        shown_all = sorted(regions)
    if not isinstance(shown_all, list) or any(not isinstance(i, int) or isinstance(i, bool) or i not in regions for i in shown_all):
        raise LskdFormatError(f"{where}: 'region_all' must list ids that have boxes, got {shown_all!r}")
    pred = _number(item, "prediction", where)
    ids = sorted(regions)
    region = sorted(set(mentioned) | set(used))
    rec = {
        "image": item["image"],
        "source": str(item.get("source", "")),
        "index": int(item["index"]) if isinstance(item.get("index"), int) else line_no - 1,
        "line": line_no,
        "region": region,
        "region_all": sorted(set(shown_all) | set(region)),  # every region the line shows (the mentioned ones included)
        "region_ids": ids,
        "region_boxes": [regions[i] for i in ids],
        "prediction": float(pred) if pred is not None else None,
    }
    for field in TEXT_FIELDS:
        rec[f"{field}_words"], rec[f"{field}_refs"] = split.get(field, ([], []))
    label = item.get("label")
    try:
        rec["label"] = critic_label_from_verdicts(label) if label is not None else None
    except ValueError as e:
        raise LskdFormatError(f"{where}: {e}") from None
    for k in ("qa_score", "r_score"):
        rec[k] = _number(item, k, where)
    return rec


def _number(item: Mapping, key: str, where: str) -> float | None:
    """A finite number (or None when absent): NaN would pass every threshold test as "not below" it."""
    v = item.get(key)
    if v is None:
        return None
    if not isinstance(v, (int, float)) or isinstance(v, bool):
        raise LskdFormatError(f"{where}: {key!r} must be a number, got {v!r}")
    if not math.isfinite(v):
        raise LskdFormatError(f"{where}: {key!r} is {v!r}; it must be a finite number")
    return float(v)


def read_lskd_jsonl(
    path: str,
    region_file: str | None = None,
    threshold: float | None = DEFAULT_THRESHOLD,
    require_rationale: bool = True,
) -> Iterator[dict]:
    """Validated records of an LSKD jsonl, keeping those with ``prediction >= threshold`` (None keeps all)."""
    region_index = read_region_file(region_file) if region_file else None
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            rec = parse_lskd_line(line, path, line_no, region_index, require_rationale)
            if threshold is not None:
                if rec["prediction"] is None:
                    raise LskdFormatError(f"{_where(path, line_no)}: no critic 'prediction' to filter on (pass threshold=None)")
                if rec["prediction"] < threshold:
                    continue
            yield rec


FEATURES = Features(
    {
        "image": Value("string"),
        "source": Value("string"),
        "index": Value("int64"),
        "line": Value("int64"),
        "region": HFSequence(Value("int64")),
        "region_all": HFSequence(Value("int64")),
        "region_ids": HFSequence(Value("int64")),
        "region_boxes": HFSequence(HFSequence(HFSequence(Value("float32")))),
        "prediction": Value("float32"),
        **{f"{f}_words": HFSequence(Value("string")) for f in TEXT_FIELDS},
        **{f"{f}_refs": HFSequence(HFSequence(Value("int64"))) for f in TEXT_FIELDS},
        "label": Value("int64"),
        "qa_score": Value("float32"),
        "r_score": Value("float32"),
        "image_path": Value("string"),
    }
)


def _generate(path, images_dir, region_file, threshold, require_rationale, check_images):
    for rec in read_lskd_jsonl(path, region_file, threshold, require_rationale):
        image_path = None
        if images_dir is not None:
            root = os.path.realpath(images_dir)
            image_path = os.path.realpath(os.path.join(root, rec["image"]))
            if os.path.commonpath([root, image_path]) != root:
                raise LskdFormatError(f"{_where(path, rec['line'])}: image path {rec['image']!r} escapes the images root {images_dir}")
            if check_images and not os.path.isfile(image_path):
                raise LskdFormatError(f"{_where(path, rec['line'])}: image file not found: {image_path}")
        yield {**rec, "image_path": image_path}


def load_lskd(
    path: str,
    images_dir: str | None = None,
    region_file: str | None = None,
    threshold: float | None = DEFAULT_THRESHOLD,
    require_rationale: bool = True,
    check_images: bool = True,
    cache_dir: str | None = None,
) -> Dataset:
    """The corpus as a ``datasets.Dataset`` (Arrow-cached by file content and options)."""
    h = hashlib.sha256()
    for p in (path, region_file):
        if p:
            st = os.stat(p)
            h.update(f"{os.path.abspath(p)}:{st.st_size}:{st.st_mtime_ns}".encode())
    h.update(repr((images_dir and os.path.abspath(images_dir), threshold, require_rationale, check_images)).encode())
    from datasets.exceptions import DatasetGenerationError

    try:
        return Dataset.from_generator(
            _generate,
            gen_kwargs=dict(path=path, images_dir=images_dir, region_file=region_file, threshold=threshold,
                            require_rationale=require_rationale, check_images=check_images),
            features=FEATURES,
            cache_dir=cache_dir,
            config_name=h.hexdigest()[:16],
        )
    except DatasetGenerationError as e:  # surface the message that names the file and line
        cause = e.__cause__ or e.__context__
        while cause is not None and not isinstance(cause, (LskdFormatError, OSError)):
            cause = cause.__cause__ or cause.__context__
        if cause is not None:
            raise cause from None
        raise


def lskd_text(question: str, answer: str, rationale: str | None = None) -> str:
    """``"Q Answer: A Rationale: R"`` (or ``"Q Answer: A"`` without a rationale)."""
    text = f"{question} Answer: {answer}"
    return f"{text} Rationale: {rationale}" if rationale else text


def record_regions(rec: Mapping) -> dict[int, list]:
    return {int(i): [list(b) for b in boxes] for i, boxes in zip(rec["region_ids"], rec["region_boxes"])}


def record_tokens(rec: Mapping, field: str) -> list:
    return [list(r) if r else w for w, r in zip(rec[f"{field}_words"], rec[f"{field}_refs"])]


DEFAULT_MAX_LENGTH = 128  # text tokens: the paper and the released configs (max_txt_len 128)


class LskdCollator:
    """Rows of :func:`load_lskd` -> ``pixel_values``, ``input_ids``, ``attention_mask`` (+ critic targets).

    Regions are drawn with :func:`hf_vcr.data.regions.localize`. With ``augment`` (training) the collator does
    what the released data pipeline (``UnifiedVQAChatGPTContrastiveDataset``) does:

    * regions: with probability 1/2 only the mentioned ones, otherwise the line's ``region_all``, in a random
      order, renumbered ``0..n-1`` in that order (``region_strategy="released"``; ``"uniform"`` is hf_vcr's
      earlier augmentation, see :class:`~hf_vcr.data.regions.RegionAugmenter`);
    * text: ``"Q Answer: A Rationale: R"`` with probability ``rationale_probability`` (default 1/2 with
      ``augment``), ``"Q Answer: A"`` otherwise.

    Without ``augment`` every region is drawn with its own id and the rationale is always added (with
    ``with_rationale``): the drawing is deterministic, so frozen vision outputs can be cached by ``example_ids``.
    ``with_rationale=False`` never adds it. Both random choices come from ``self.rng`` (seeded by ``seed``).
    """

    def __init__(
        self,
        tokenizer,
        image_processor,
        with_rationale: bool = True,
        augment: bool = False,
        max_regions: int = 16,
        max_length: int = DEFAULT_MAX_LENGTH,
        alpha: float = 0.3,
        seed: int = 0,
        critic_targets: bool = False,
        rationale_probability: float | None = None,
        region_strategy: str = "released",
    ):
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        self.with_rationale = with_rationale
        self.augmenter = RegionAugmenter(strategy=region_strategy, max_regions=max_regions) if augment else None
        if rationale_probability is None:
            rationale_probability = 0.5
        if not 0.0 <= rationale_probability <= 1.0:
            raise ValueError(f"rationale_probability must be in [0, 1], got {rationale_probability}")
        # the coin is part of the augmentation: without it every text keeps its rationale
        self.rationale_probability = rationale_probability if augment else 1.0
        self.max_length = max_length
        self.alpha = alpha
        self.rng = random.Random(seed)
        self.critic_targets = critic_targets

    def _fields(self, rec: Mapping) -> list[str]:
        add = self.with_rationale and bool(rec.get("rationale_words"))
        if add and self.rationale_probability < 1.0:
            add = self.rng.random() < self.rationale_probability
        return ["question", "answer"] + (["rationale"] if add else [])

    def _localize(self, rec: Mapping, image: Image.Image | None, fields: list[str]):
        if image is None:
            image = Image.open(rec["image_path"]).convert("RGB")
        region_all = rec.get("region_all")
        return localize(
            image, record_regions(rec), [record_tokens(rec, f) for f in fields], mentioned=list(rec["region"]),
            augmenter=self.augmenter, rng=self.rng, alpha=self.alpha,
            region_all=list(region_all) if region_all is not None else None,
        )

    def render(self, rec: Mapping, image: Image.Image | None = None) -> tuple[Image.Image, str]:
        drawn, texts, _ = self._localize(rec, image, self._fields(rec))
        return drawn, lskd_text(*texts)

    def __call__(self, rows: Sequence[Mapping]) -> dict[str, torch.Tensor]:
        images, texts = zip(*(self.render(r) for r in rows))
        batch = dict(self.tokenizer(list(texts), padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"))
        batch.pop("token_type_ids", None)
        batch["pixel_values"] = self.image_processor(list(images), return_tensors="pt")["pixel_values"]
        batch["example_ids"] = torch.tensor([int(r["line"]) for r in rows])  # unique per corpus line (vision cache key)
        if self.critic_targets:
            missing = [r["line"] for r in rows if r.get("label") is None or r.get("qa_score") is None or r.get("r_score") is None]
            if missing:
                raise LskdFormatError(f"critic training needs 'label', 'qa_score' and 'r_score'; missing on line(s) {missing}")
            batch["labels"] = torch.tensor([int(r["label"]) for r in rows])
            batch["qa_score"] = torch.tensor([float(r["qa_score"]) for r in rows])
            batch["r_score"] = torch.tensor([float(r["r_score"]) for r in rows])
        return batch


class LskdGenerativeCollator(LskdCollator):
    """Rows -> inputs of ``Blip2ForConditionalGeneration``: ``[image]*Q`` + question (prompt) + ``"Answer: A Rationale: R"`` + eos.

    ``labels`` are -100 on the image placeholders, the prompt and the padding, so the language
    model is trained to generate the answer and rationale for the region-referring question.
    """

    def __init__(self, tokenizer, image_processor, num_query_tokens: int, image_token_id: int, eos_token_id: int, **kw):
        kw.setdefault("rationale_probability", 1.0)  # the released generative data always ends with the rationale
        super().__init__(tokenizer, image_processor, **kw)
        self.num_query_tokens = num_query_tokens
        self.image_token_id = image_token_id
        self.eos_token_id = eos_token_id

    def render_parts(self, rec: Mapping, image: Image.Image | None = None) -> tuple[Image.Image, str, str]:
        drawn, texts, _ = self._localize(rec, image, self._fields(rec))
        target = f"Answer: {texts[1]}" + (f" Rationale: {texts[2]}" if len(texts) > 2 else "")
        return drawn, texts[0], target

    def prompt_ids(self, question: str) -> list[int]:
        return [self.image_token_id] * self.num_query_tokens + self.tokenizer(question, add_special_tokens=False)["input_ids"]

    def __call__(self, rows: Sequence[Mapping]) -> dict[str, torch.Tensor]:
        parts = [self.render_parts(r) for r in rows]
        seqs, labels = [], []
        for _, question, target in parts:
            prompt = self.prompt_ids(question)
            tgt = self.tokenizer(target, add_special_tokens=False)["input_ids"] + [self.eos_token_id]
            ids = (prompt + tgt)[: self.num_query_tokens + self.max_length]
            seqs.append(ids)
            labels.append(([-100] * len(prompt) + tgt)[: len(ids)])
        width = max(len(s) for s in seqs)
        pad = self.tokenizer.pad_token_id
        batch = {
            "input_ids": torch.tensor([s + [pad] * (width - len(s)) for s in seqs]),
            "attention_mask": torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in seqs]),
            "labels": torch.tensor([l + [-100] * (width - len(l)) for l in labels]),
            "pixel_values": self.image_processor([p[0] for p in parts], return_tensors="pt")["pixel_values"],
            "example_ids": torch.tensor([int(r["line"]) for r in rows]),
        }
        return batch
