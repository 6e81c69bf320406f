"""VCR 1.0 (Zellers et al., CVPR 2019) from the official files, as ``datasets.Dataset``.

``{split}.jsonl`` holds one item per line; with ``images_dir`` each item's metadata json
(``vcr1images/<metadata_fn>``: boxes, names, width, height, segms) is read as well.
Views turn items into multiple-choice examples for each process:

=========  ==================================  =================  ==============
view       query                               choices            label
=========  ==================================  =================  ==============
q2a        question                            4 answers          answer_label
qa2r       question + right answer             4 rationales       rationale_label
qr2a       question + right rationale          4 answers          answer_label (ARC's teacher)
a2r        right answer alone                  4 rationales       rationale_label (ARC's probe)
joint      question + answer i (i = 0..3)      4 rationales each  4 * answer + rationale
=========  ==================================  =================  ==============
"""

from __future__ import annotations

import hashlib
import json
import os

try:  # orjson parses the large official files several times faster than json
    from orjson import JSONDecodeError as _FastDecodeError, loads as _fast_loads
except ImportError:  # pragma: no cover - orjson is an install requirement
    _fast_loads, _FastDecodeError = json.loads, json.JSONDecodeError
from typing import Any, Iterator, Sequence

import numpy as np
import pyarrow as pa
from datasets import Dataset, Features, Sequence as HFSequence, Value, load_from_disk

from .references import REFERENCE_STYLES, render, split_tokens

N_CHOICES = 4
VIEWS = ("q2a", "qa2r", "qr2a", "a2r", "joint")


class VcrFormatError(ValueError):
    """A VCR file does not follow the official format; the message names file, line and problem."""


def _where(path: str, line_no: int | None) -> str:
    return f"{path}, line {line_no}" if line_no is not None else path


def _check_refs(tokens: Any, n_objects: int, field: str, where: str) -> None:
    if not isinstance(tokens, list):
        raise VcrFormatError(f"{where}: {field} must be a list of tokens, got {type(tokens).__name__}")
    for tok in tokens:
        if isinstance(tok, str):
            continue
        if not isinstance(tok, list) or not all(isinstance(i, int) for i in tok):
            raise VcrFormatError(f"{where}: {field} has a token that is neither a word nor a list of object indices: {tok!r}")
        for i in tok:
            if not 0 <= i < n_objects:
                raise VcrFormatError(
                    f"{where}: {field} references object {i}, out of range for the item's {n_objects} objects"
                )


def validate_item(item: Any, path: str, line_no: int | None = None) -> dict:
    """Check one raw VCR item; raise :class:`VcrFormatError` naming the file and line."""
    where = _where(path, line_no)
    if not isinstance(item, dict):
        raise VcrFormatError(f"{where}: an item must be a JSON object, got {type(item).__name__}")
    for key in ("annot_id", "objects", "img_fn", "question", "answer_choices", "rationale_choices"):
        if key not in item:
            raise VcrFormatError(f"{where}: missing field {key!r}")
    n_objects = len(item["objects"])
    _check_refs(item["question"], n_objects, "question", where)
    for field in ("answer_choices", "rationale_choices"):
        choices = item[field]
        if not isinstance(choices, list) or len(choices) != N_CHOICES:
            got = len(choices) if isinstance(choices, list) else type(choices).__name__
            raise VcrFormatError(f"{where} ({item['annot_id']}): wrong number of choices: {field} has {got}, expected {N_CHOICES}")
        for k, choice in enumerate(choices):
            _check_refs(choice, n_objects, f"{field}[{k}]", where)
    for field in ("answer_label", "rationale_label"):
        if field in item and item[field] not in range(N_CHOICES):
            raise VcrFormatError(f"{where} ({item['annot_id']}): {field} must be 0..3, got {item[field]!r}")
    return item


def read_vcr_jsonl(path: str) -> Iterator[dict]:
    """Yield validated raw items of a VCR jsonl file."""
    for _, item in enumerate_items(path):
        yield item


def resolve_under(root: str, relative: str, what: str, where: str) -> str:
    """``root/relative``, refusing paths that escape ``root`` (absolute paths, ``..``, symlinks)."""
    root_real = os.path.realpath(root)
    path = os.path.realpath(os.path.join(root_real, relative))
    if os.path.isabs(relative) or os.path.commonpath([root_real, path]) != root_real:
        raise VcrFormatError(f"{where}: {what} {relative!r} escapes the image root {root}")
    return path


def read_metadata(path: str, n_objects: int, where: str) -> dict:
    """Read and check a ``vcr1images/<metadata_fn>`` file."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{where}: metadata file not found: {path}")
    try:
        with open(path, encoding="utf-8") as f:
            meta = json.load(f)
    except json.JSONDecodeError as e:
        raise VcrFormatError(f"{path}: malformed JSON in metadata ({where}): {e.msg}") from None
    for key in ("boxes", "names", "width", "height"):
        if key not in meta:
            raise VcrFormatError(f"{path}: metadata ({where}) lacks {key!r}")
    if len(meta["boxes"]) != n_objects:
        raise VcrFormatError(f"{path}: {len(meta['boxes'])} boxes for an item with {n_objects} objects ({where})")
    return meta


FEATURES = Features(
    {
        "annot_id": Value("string"),
        "movie": Value("string"),
        "img_fn": Value("string"),
        "metadata_fn": Value("string"),
        "objects": HFSequence(Value("string")),
        "question": HFSequence(Value("string")),
        "question_refs": HFSequence(HFSequence(Value("int32"))),
        "answer_choices": HFSequence(HFSequence(Value("string"))),
        "answer_choices_refs": HFSequence(HFSequence(HFSequence(Value("int32")))),
        "rationale_choices": HFSequence(HFSequence(Value("string"))),
        "rationale_choices_refs": HFSequence(HFSequence(HFSequence(Value("int32")))),
        "answer_label": Value("int32"),
        "rationale_label": Value("int32"),
        "image_path": Value("string"),
        "metadata_path": Value("string"),
        "boxes": HFSequence(HFSequence(Value("float32"))),
        "width": Value("int32"),
        "height": Value("int32"),
    }
)


def _columns(path: str, images_dir: str | None, check_images: bool) -> dict[str, list]:
    cols: dict[str, list] = {name: [] for name in FEATURES}
    for line_no, item in enumerate_items(path):
        where = f"{path}, line {line_no} ({item['annot_id']})"
        q_words, q_refs = split_tokens(item["question"])
        answers = [split_tokens(c) for c in item["answer_choices"]]
        rationales = [split_tokens(c) for c in item["rationale_choices"]]
        image_path = metadata_path = None
        boxes, width, height = [], None, None
        if images_dir is not None:
            image_path = resolve_under(images_dir, item["img_fn"], "img_fn", where)
            if check_images and not os.path.isfile(image_path):
                raise FileNotFoundError(f"{where}: image file not found: {image_path}")
            if "metadata_fn" not in item:
                raise VcrFormatError(f"{where}: missing field 'metadata_fn'")
            metadata_path = resolve_under(images_dir, item["metadata_fn"], "metadata_fn", where)
            meta = read_metadata(metadata_path, len(item["objects"]), where)
            boxes, width, height = meta["boxes"], meta["width"], meta["height"]
        row = {
            "annot_id": item["annot_id"],
            "movie": item.get("movie"),
            "img_fn": item["img_fn"],
            "metadata_fn": item.get("metadata_fn"),
            "objects": item["objects"],
            "question": q_words,
            "question_refs": q_refs,
            "answer_choices": [w for w, _ in answers],
            "answer_choices_refs": [r for _, r in answers],
            "rationale_choices": [w for w, _ in rationales],
            "rationale_choices_refs": [r for _, r in rationales],
            "answer_label": item.get("answer_label"),
            "rationale_label": item.get("rationale_label"),
            "image_path": image_path,
            "metadata_path": metadata_path,
            "boxes": boxes,
            "width": width,
            "height": height,
        }
        for k, v in row.items():
            cols[k].append(v)
    return cols


def enumerate_items(path: str) -> Iterator[tuple[int, dict]]:
    """Yield ``(line number, validated raw item)`` for a VCR jsonl file."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"VCR annotations not found: {path}")
    with open(path, "rb") as f:
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                item = _fast_loads(line)
            except _FastDecodeError:
                try:  # the standard parser accepts a little more (NaN) and names the position of a problem
                    item = json.loads(line)
                except json.JSONDecodeError as e:
                    raise VcrFormatError(f"{path}, line {line_no}: malformed JSON: {e.msg} (column {e.colno})") from None
            yield line_no, validate_item(item, path, line_no)


def _fingerprint(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def default_cache_dir() -> str:
    return os.path.join(os.environ.get("HF_DATASETS_CACHE", os.path.expanduser("~/.cache/huggingface/datasets")), "hf_vcr")


def load_vcr(
    split: str,
    annotations_dir: str,
    images_dir: str | None = None,
    *,
    cache_dir: str | None = None,
    check_images: bool = True,
) -> Dataset:
    """Load ``{annotations_dir}/{split}.jsonl`` (``split`` may also be a path to a jsonl file).

    With ``images_dir`` (the ``vcr1images`` folder) each item's metadata is read and the
    image and metadata paths are kept. The result is cached as Arrow under ``cache_dir``
    keyed by the file's path, size and mtime; a second call memory-maps the cache.
    """
    path = split if split.endswith(".jsonl") and os.path.isfile(split) else os.path.join(annotations_dir, f"{split}.jsonl")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"VCR annotations not found: {path}")
    stat = os.stat(path)
    key = _fingerprint(os.path.realpath(path), stat.st_size, stat.st_mtime_ns, images_dir and os.path.realpath(images_dir), 1)
    cache_root = cache_dir or default_cache_dir()
    cached = os.path.join(cache_root, f"vcr-{os.path.basename(path)[:-6]}-{key}")
    if os.path.isdir(cached):
        return load_from_disk(cached)
    # pyarrow converts the nested lists in C++; Dataset.from_dict would encode them row by row in Python
    ds = Dataset(pa.Table.from_pydict(_columns(path, images_dir, check_images), schema=FEATURES.arrow_schema))
    from ..utils.checkpoints import atomic_directory

    with atomic_directory(cached) as tmp:
        ds.save_to_disk(tmp)
    return load_from_disk(cached)


# --------------------------------------------------------------------------- views


def _pairs(row: dict, view: str) -> tuple[list[tuple[list[str], list[list[int]]]], list[tuple[list[str], list[list[int]]]], int]:
    """(query per choice, response per choice, label) in words/refs form."""
    q = (row["question"], row["question_refs"])
    answers = list(zip(row["answer_choices"], row["answer_choices_refs"]))
    rationales = list(zip(row["rationale_choices"], row["rationale_choices_refs"]))
    a, r = row["answer_label"], row["rationale_label"]

    def cat(x, y):
        return (list(x[0]) + list(y[0]), list(x[1]) + list(y[1]))

    def need(label, name):
        if label is None:
            raise ValueError(f"view {view!r} needs {name}, which item {row['annot_id']} lacks (test split?)")
        return label

    if view == "q2a":
        return [q] * N_CHOICES, answers, -100 if a is None else a
    if view == "qa2r":
        return [cat(q, answers[need(a, "answer_label")])] * N_CHOICES, rationales, -100 if r is None else r
    if view == "qr2a":
        return [cat(q, rationales[need(r, "rationale_label")])] * N_CHOICES, answers, -100 if a is None else a
    if view == "a2r":
        return [answers[need(a, "answer_label")]] * N_CHOICES, rationales, -100 if r is None else r
    if view == "joint":
        queries = [cat(q, ans) for ans in answers for _ in range(N_CHOICES)]
        label = -100 if a is None or r is None else N_CHOICES * a + r
        return queries, rationales * N_CHOICES, label
    raise ValueError(f"unknown VCR view {view!r}; choose one of {VIEWS}")


def render_view(row: dict, view: str, reference_style: str = "r2c"):
    """Rendered (query_words, query_objs, response_words, response_objs) per choice, and the label."""
    if reference_style not in REFERENCE_STYLES:
        raise ValueError(f"unknown reference style {reference_style!r}; choose one of {REFERENCE_STYLES}")
    queries, responses, label = _pairs(row, view)
    names = row["objects"]
    rendered = []
    for (qw, qr), (rw, rr) in zip(queries, responses):
        qw2, qo = render(qw, qr, names, reference_style)
        rw2, ro = render(rw, rr, names, reference_style)
        rendered.append((qw2, qo, rw2, ro))
    return rendered, label


def _token_objects(encoding, query_objs: Sequence[int], response_objs: Sequence[int]) -> list[int]:
    words = encoding.word_ids
    seqs = encoding.sequence_ids
    return [
        -1 if w is None else (query_objs[w] if s == 0 else response_objs[w])
        for w, s in zip(words, seqs)
    ]


_VIEW_COLUMNS = [
    "annot_id", "objects", "question", "question_refs", "answer_choices", "answer_choices_refs",
    "rationale_choices", "rationale_choices_refs", "answer_label", "rationale_label",
]


def _nest(rows: list[list[int]], offsets: np.ndarray, type_: pa.DataType) -> pa.ListArray:
    """Per-sequence token lists -> one ``list<list<type>>`` row per item (``offsets`` split the sequences)."""
    inner = pa.ListArray.from_arrays(
        pa.array(np.cumsum([0] + [len(r) for r in rows]), pa.int32()), pa.array([t for r in rows for t in r], type_)
    )
    return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), inner)


def tokenize_view(
    dataset: Dataset,
    tokenizer,
    view: str = "q2a",
    *,
    max_length: int = 64,
    reference_style: str = "r2c",
    max_objects: int | None = None,
    num_proc: int | None = None,
    keep_columns: Sequence[str] = ("annot_id",),
    load_from_cache_file: bool = True,
) -> Dataset:
    """Tokenize a view with a fast tokenizer in a batched ``map`` (cached as Arrow).

    Each example gets ``input_ids``/``token_type_ids``/``attention_mask`` ``[C, L]``
    (unpadded lists), ``object_ids`` ``[C, L]`` (index of the object each token names,
    -1 for none: r2c-style grounding), ``labels`` and the item's ``boxes`` (+ image path).
    """
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError("tokenize_view needs a fast tokenizer (it maps tokens back to words)")

    def encode(batch: pa.Table) -> pa.Table:
        per_item = [render_view(row, view, reference_style) for row in batch.select(_VIEW_COLUMNS).to_pylist()]
        queries, responses, qobjs, robjs, counts = [], [], [], [], []
        for rendered, _ in per_item:
            counts.append(len(rendered))
            for qw, qo, rw, ro in rendered:
                queries.append(qw)
                responses.append(rw)
                qobjs.append(qo)
                robjs.append(ro)
        enc = tokenizer(
            queries,
            responses,
            is_split_into_words=True,
            truncation="longest_first",
            max_length=max_length,
            return_token_type_ids=True,
        )
        object_ids = [_token_objects(enc[j], qobjs[j], robjs[j]) for j in range(len(queries))]
        if max_objects is not None:
            object_ids = [[o if o < max_objects else -1 for o in ids] for ids in object_ids]
        offsets = np.cumsum([0] + counts)
        out = {
            "input_ids": _nest(enc["input_ids"], offsets, pa.int32()),
            "token_type_ids": _nest(enc["token_type_ids"], offsets, pa.int8()),
            "attention_mask": _nest(enc["attention_mask"], offsets, pa.int8()),
            "object_ids": _nest(object_ids, offsets, pa.int16()),
            "labels": pa.array([label for _, label in per_item], pa.int64()),
        }
        for column in keep_columns_present:
            out[column] = batch.column(column)
        # Arrow in, Arrow out: no per-row Python encoding by datasets on the way to the cache file
        return pa.table(out)

    keep = set(keep_columns) | {"boxes", "image_path", "img_fn", "width", "height"}
    keep_columns_present = [c for c in dataset.column_names if c in keep]
    return dataset.with_format("arrow").map(
        encode,
        batched=True,
        batch_size=1000,
        num_proc=num_proc,
        remove_columns=dataset.column_names,
        load_from_cache_file=load_from_cache_file,
        desc=f"Tokenizing VCR {view}",
    ).with_format(None)


def text_view(dataset: Dataset, view: str, reference_style: str = "r2c") -> Dataset:
    """A view as plain text, one row per item: ``annot_id``, ``queries`` and ``responses`` (one per choice)
    and ``label``; the form in which the views are shared on the Hub (one config per view)."""

    def to_text(batch: pa.Table) -> pa.Table:
        queries, responses, labels = [], [], []
        for row in batch.select(_VIEW_COLUMNS).to_pylist():
            rendered, label = render_view(row, view, reference_style)
            queries.append([" ".join(q) for q, _, _, _ in rendered])
            responses.append([" ".join(r) for _, _, r, _ in rendered])
            labels.append(label)
        return pa.table({"annot_id": batch.column("annot_id"), "queries": queries, "responses": responses, "label": labels})

    return dataset.with_format("arrow").map(
        to_text, batched=True, remove_columns=dataset.column_names, desc=f"VCR {view} as text"
    ).with_format(None)


def hub_configs(dataset: Dataset, views: Sequence[str] = ("q2a", "qa2r", "qr2a", "joint"), reference_style: str = "r2c") -> dict[str, Dataset]:
    """``{view: text_view(dataset, view)}`` for :func:`hf_vcr.hub.push_dataset` (one config per task)."""
    return {view: text_view(dataset, view, reference_style) for view in views}
