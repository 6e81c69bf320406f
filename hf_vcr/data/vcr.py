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

import codecs
import gc
import hashlib
import json
import os
from contextlib import contextmanager
from typing import Any, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from datasets import Dataset, Features, Sequence as HFSequence, Value, load_from_disk

from .references import GENDER_NEUTRAL_NAMES, REFERENCE_STYLES, render, split_tokens
from .vcr_format import (  # noqa: F401  (the format rules live in a light module; re-exported here)
    N_CHOICES,
    VcrFormatError,
    enumerate_items,
    read_metadata,
    read_vcr_jsonl,
    resolve_under,
    validate_item,
)

VIEWS = ("q2a", "qa2r", "qr2a", "a2r", "joint")


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


@contextmanager
def _no_gc():
    """Pause the cyclic garbage collector: building millions of small lists that all stay alive
    otherwise triggers full collections over an ever larger heap (quadratic time); nothing
    built here is cyclic."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _read_columns(path: str, images_dir: str | None, check_images: bool, start: int = 0, end: int | None = None,
                  first_line: int = 1) -> dict[str, list]:
    cols: dict[str, list] = {name: [] for name in FEATURES}
    for line_no, item in enumerate_items(path, start, end, first_line):
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


def _line_chunks(path: str, n: int) -> list[tuple[int, int, int]]:
    """Split a file into ``n`` byte ranges on line boundaries: ``(start, end, first line number)``."""
    with open(path, "rb") as f:
        data = f.read()
    bounds = [0]
    for k in range(1, n):
        cut = data.find(b"\n", len(data) * k // n)
        bounds.append(len(data) if cut < 0 else cut + 1)
    bounds.append(len(data))
    bounds = sorted(set(bounds))
    return [(a, b, data.count(b"\n", 0, a) + 1) for a, b in zip(bounds, bounds[1:])]


def _read_table(path: str, images_dir: str | None, check_images: bool, start: int = 0, end: int | None = None, first_line: int = 1) -> pa.Table:
    with _no_gc():
        columns = _read_columns(path, images_dir, check_images, start, end, first_line)
        # pyarrow converts the nested lists in C++; Dataset.from_dict would encode them row by row in Python
        return pa.Table.from_pydict(columns, schema=FEATURES.arrow_schema)


def _read_table_star(args) -> pa.Table:
    return _read_table(*args)


# ----------------------------------------------------------------- fast path (pyarrow C++ JSON reader)

_MARK = "\x7f"  # DEL: legal unescaped inside JSON strings; a file that contains it anywhere takes the Python path
_STRS = pa.list_(pa.string())
_FAST_SCHEMA = pa.schema(
    [
        ("annot_id", pa.string()), ("movie", pa.string()), ("img_fn", pa.string()), ("metadata_fn", pa.string()),
        ("objects", _STRS), ("question", _STRS), ("answer_choices", pa.list_(_STRS)),
        ("rationale_choices", pa.list_(_STRS)), ("answer_label", pa.int32()), ("rationale_label", pa.int32()),
    ]
)
_REQUIRED = ("annot_id", "objects", "img_fn", "question", "answer_choices", "rationale_choices")


def _refs_to_strings(data: bytearray) -> bool:
    """Rewrite, in place, each list of numbers ``␠[0, 1]`` (a VCR object reference) as the string
    ``"\x7f0, 1"``: the space before the bracket (``json.dumps`` separators) makes room for the
    quote, so the length never changes and numpy does it at memory speed (1 MiB blocks of
    whole lines, two threads). Token lists become plain string lists that pyarrow's typed reader accepts.
    Anything this rewrite gets wrong (other spacing, a bracket inside a string) leaves invalid
    JSON or a wrong type, which the caller answers with the Python path. False if the file
    already contains the marker."""
    if _MARK.encode() in data or (b"\\u007" in data and (b"\\u007f" in data or b"\\u007F" in data)):
        return False
    arr = np.frombuffer(data, np.uint8)
    # blocks of whole lines, small enough to stay in the CPU caches through the few numpy passes
    bounds, block = [0], 1 << 20
    while bounds[-1] + block < len(data):
        cut = data.find(b"\n", bounds[-1] + block)
        if cut < 0:
            break
        bounds.append(cut + 1)
    bounds.append(len(data))
    blocks = [arr[a:b] for a, b in zip(bounds, bounds[1:]) if b > a]
    if len(blocks) == 1:
        _rewrite_refs(blocks[0])
    else:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(2) as pool:  # numpy releases the GIL
            list(pool.map(_rewrite_refs, blocks))
    return True


def _rewrite_refs(arr: np.ndarray) -> None:
    n = len(arr)
    opens = np.flatnonzero(arr == 91)
    opens = opens[(opens >= 3) & (opens + 1 < n)]
    nxt = arr[opens + 1]
    opens = opens[((nxt - 48) < 10) | (nxt == 45)]  # uint8 arithmetic: digits and '-'
    p1, p2, p3 = arr[opens - 1], arr[opens - 2], arr[opens - 3]
    k1 = opens[p1 == 32]  # ' [0'   -> '"\x7f0'
    k2 = opens[(p1 == 91) & (p2 == 32)]  # ' [[0'  -> '["\x7f0'
    k3 = opens[(p1 == 91) & (p2 == 91) & (p3 == 32)]  # ' [[[0' -> '[["\x7f0'
    closes = np.flatnonzero(arr == 93)
    closes = closes[closes >= 1]
    closes = closes[(arr[closes - 1] - 48) < 10]
    arr[closes] = 34
    arr[k1 - 1] = 34
    arr[k2 - 2] = 91
    arr[k2 - 1] = 34
    arr[k3 - 3] = 91
    arr[k3 - 2] = 91
    arr[k3 - 1] = 34
    arr[np.concatenate([k1, k2, k3])] = 0x7F


def _offsets(lists: pa.Array) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(pc.list_value_length(lists).to_numpy(zero_copy_only=False))]).astype(np.int32)


def _split_flat_tokens(tokens: pa.Array, item_token_offsets: np.ndarray, n_objects: np.ndarray):
    """Flat marked tokens (``item_token_offsets`` split them by item) -> (words, refs) arrays, or None
    if a reference is not a plain list of in-range indices."""
    is_ref = pc.starts_with(tokens, _MARK)
    words = pc.if_else(is_ref, "", tokens)
    ref_pos = np.flatnonzero(is_ref.to_numpy(zero_copy_only=False))
    counts = np.zeros(len(tokens), np.int64)
    if len(ref_pos):
        parts = pc.split_pattern(pc.utf8_slice_codeunits(tokens.take(ref_pos), 1), ", ")
        flat_parts = parts.flatten()
        if not pc.all(pc.ascii_is_decimal(flat_parts)).as_py():
            return None
        try:
            values = pc.cast(flat_parts, pa.int32())
        except (pa.ArrowInvalid, ValueError):
            return None
        v = values.to_numpy(zero_copy_only=False).astype(np.int64)
        digits = pc.binary_length(flat_parts).to_numpy(zero_copy_only=False).astype(np.int64)
        if np.any((digits > 1) & (v < 10 ** (digits - 1))):  # a leading zero, which json.loads rejects
            return None
        per_ref = pc.list_value_length(parts).to_numpy(zero_copy_only=False)
        item_of_ref = np.searchsorted(item_token_offsets, ref_pos, side="right") - 1
        if np.any(v >= np.repeat(n_objects[item_of_ref], per_ref)):  # (digits only: never negative)
            return None
        counts[ref_pos] = per_ref
    else:
        values = pa.array([], pa.int32())
    return words, pa.ListArray.from_arrays(pa.array(_exclusive_cumsum(counts).astype(np.int32)), values)


def _split_field(col: pa.ListArray, nested: bool, n_objects: np.ndarray):
    """``question`` (or, nested, ``answer_choices``) -> (words, refs) columns, or None if anything is off."""
    n = len(col)
    if nested:
        if n and not pc.all(pc.equal(pc.list_value_length(col), N_CHOICES)).as_py():
            return None
        choices = col.flatten()
        if choices.null_count:
            return None
    else:
        choices = col
    tokens = choices.flatten()
    if tokens.null_count:
        return None
    inner_np = _offsets(choices)
    item_token_offsets = inner_np[:: N_CHOICES] if nested else inner_np
    split = _split_flat_tokens(tokens, item_token_offsets.astype(np.int64), n_objects)
    if split is None:
        return None
    inner = pa.array(inner_np)
    words, refs = pa.ListArray.from_arrays(inner, split[0]), pa.ListArray.from_arrays(inner, split[1])
    if nested:
        outer = pa.array((np.arange(n + 1) * N_CHOICES).astype(np.int32))
        words, refs = pa.ListArray.from_arrays(outer, words), pa.ListArray.from_arrays(outer, refs)
    return words, refs


def _fast_batch(batch: pa.RecordBatch) -> dict | None:
    """Checks and the words/refs split for one record batch of :func:`_fast_read_table`; None if anything is off."""
    cols = {name: batch.column(name) for name in _FAST_SCHEMA.names}
    for name in _REQUIRED:
        if cols[name].null_count:
            return None
    if len(cols["annot_id"]) and pc.min(pc.utf8_length(cols["annot_id"])).as_py() == 0:
        return None  # an empty annot_id
    null_labels = False
    for name in ("answer_label", "rationale_label"):
        col = cols[name]
        null_labels |= col.null_count > 0
        if len(col) - col.null_count:
            lo, hi = pc.min_max(col).values()
            if lo.as_py() < 0 or hi.as_py() >= N_CHOICES:
                return None
    if cols["objects"].flatten().null_count:
        return None
    n_objects = pc.list_value_length(cols["objects"]).to_numpy(zero_copy_only=False)
    for field in ("question", "answer_choices", "rationale_choices"):
        split = _split_field(cols[field], field != "question", n_objects)
        if split is None:
            return None
        cols[field], cols[field + "_refs"] = split
    cols["null_labels"] = null_labels
    return cols


def _fast_read_table(path: str, images_dir: str | None, check_images: bool) -> pa.Table | None:
    """The whole file parsed and validated without per-token Python, or None when anything is off
    (then the Python path reads it again and raises the precise error)."""
    import pyarrow.json as pj

    data = bytearray(os.path.getsize(path))
    with open(path, "rb") as f:
        if f.readinto(data) != len(data):
            return None
    if not data.isascii() and not _valid_utf8(data):
        return None  # pyarrow does not check: invalid bytes would reach the Arrow cache
    if not _refs_to_strings(data):
        return None
    from concurrent.futures import ThreadPoolExecutor

    # a streaming reader: each record batch (1 MiB of JSON) is checked and split on a worker thread while the
    # reader parses the next one (Arrow compute and numpy release the GIL), and while it is still in the CPU caches
    try:
        reader = pj.open_json(
            pa.BufferReader(pa.py_buffer(data)),
            parse_options=pj.ParseOptions(explicit_schema=_FAST_SCHEMA, unexpected_field_behavior="ignore"),
        )
        with ThreadPoolExecutor(2) as pool:
            futures = [pool.submit(_fast_batch, batch) for batch in reader]
            parts = [future.result() for future in futures]
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError, ValueError):
        return None
    if not parts or any(part is None for part in parts):
        return None
    if any(part.pop("null_labels") for part in parts) and b"null" in data:
        return None  # an explicit null label is an error (the Python path says so), a missing one is not
    n = sum(len(part["annot_id"]) for part in parts)
    if pc.count_distinct(pa.chunked_array([part["annot_id"] for part in parts], pa.string())).as_py() != n:
        return None  # a repeated annot_id: the Python path names both lines
    cols = {name: pa.chunked_array([part[name] for part in parts], parts[0][name].type)
            for name in _FAST_SCHEMA.names + ["question_refs", "answer_choices_refs", "rationale_choices_refs"]}
    n_objects = pc.list_value_length(cols["objects"]).to_numpy()
    out = {f: cols[f] for f in ("question", "question_refs", "answer_choices", "answer_choices_refs", "rationale_choices", "rationale_choices_refs")}
    boxes_type = FEATURES.arrow_schema.field("boxes").type
    image_path = metadata_path = pa.nulls(n, pa.string())
    boxes = pa.ListArray.from_arrays(pa.array(np.zeros(n + 1, np.int32)), pa.array([], boxes_type.value_type))
    width = height = pa.nulls(n, pa.int32())
    if images_dir is not None:
        try:
            image_paths, metadata_paths, box_lists, widths, heights = [], [], [], [], []
            for annot_id, img_fn, metadata_fn, n_obj in zip(
                cols["annot_id"].to_pylist(), cols["img_fn"].to_pylist(), cols["metadata_fn"].to_pylist(), n_objects.tolist()
            ):
                where = f"{path} ({annot_id})"
                image_path_ = resolve_under(images_dir, img_fn, "img_fn", where)
                if check_images and not os.path.isfile(image_path_):
                    return None
                if metadata_fn is None:
                    return None
                metadata_path_ = resolve_under(images_dir, metadata_fn, "metadata_fn", where)
                meta = read_metadata(metadata_path_, n_obj, where)
                image_paths.append(image_path_)
                metadata_paths.append(metadata_path_)
                box_lists.append(meta["boxes"])
                widths.append(meta["width"])
                heights.append(meta["height"])
        except (OSError, ValueError):
            return None  # the Python path names the line
        image_path, metadata_path = pa.array(image_paths, pa.string()), pa.array(metadata_paths, pa.string())
        boxes = pa.array(box_lists, boxes_type)
        width, height = pa.array(widths, pa.int32()), pa.array(heights, pa.int32())
    columns = {
        "annot_id": cols["annot_id"], "movie": cols["movie"], "img_fn": cols["img_fn"], "metadata_fn": cols["metadata_fn"],
        "objects": cols["objects"], **out, "answer_label": cols["answer_label"], "rationale_label": cols["rationale_label"],
        "image_path": image_path, "metadata_path": metadata_path, "boxes": boxes, "width": width, "height": height,
    }
    schema = FEATURES.arrow_schema
    try:
        return pa.Table.from_arrays([columns[name].cast(schema.field(name).type) for name in schema.names], schema=schema)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError):
        return None


def _valid_utf8(data: bytearray) -> bool:
    decoder = codecs.getincrementaldecoder("utf-8")()
    view, block = memoryview(data), 1 << 24
    try:
        for a in range(0, len(data), block):  # in blocks: a whole-file str would double the memory
            decoder.decode(view[a:a + block], final=a + block >= len(data))
    except UnicodeDecodeError:
        return False
    return True


def read_vcr_table(path: str, images_dir: str | None = None, check_images: bool = True, num_proc: int = 1) -> pa.Table:
    """The items of a VCR jsonl file as an Arrow table (``FEATURES`` schema), parsed by ``num_proc`` processes.

    Well-formed files are parsed by pyarrow's multi-threaded C++ JSON reader and checked with
    vectorised Arrow compute (:func:`_fast_read_table`); a file that fails any of those checks is
    read again line by line in Python, which raises the precise error (file, line, annot_id, problem).
    Both readers accept exactly the files :mod:`hf_vcr.data.vcr_format` describes (tested case by case in
    ``tests/bad_inputs``); an empty file and a repeated annot_id are errors.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"VCR annotations not found: {path}")
    table = _fast_read_table(path, images_dir, check_images)
    if table is None:
        table = _slow_read_vcr_table(path, images_dir, check_images, num_proc)
        if num_proc > 1 and pc.count_distinct(table.column("annot_id")).as_py() != table.num_rows:
            for _ in enumerate_items(path):  # a repeated annot_id across the workers' chunks: name its lines
                pass
    if table.num_rows == 0:
        raise VcrFormatError(f"{path}: no VCR items (empty file)")
    return table


def _slow_read_vcr_table(path: str, images_dir: str | None, check_images: bool, num_proc: int) -> pa.Table:
    if num_proc <= 1:
        return _read_table(path, images_dir, check_images)
    import multiprocessing

    # fork: the workers only parse JSON in Python, and inherit the imported modules for free
    with multiprocessing.get_context("fork").Pool(num_proc) as pool:
        tables = pool.map(_read_table_star, [(path, images_dir, check_images, a, b, line) for a, b, line in _line_chunks(path, num_proc)])
    return pa.concat_tables(tables)


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
    num_proc: int | None = None,
) -> Dataset:
    """Load ``{annotations_dir}/{split}.jsonl`` (``split`` may also be a path to a jsonl file).

    With ``images_dir`` (the ``vcr1images`` folder) each item's metadata is read and the
    image and metadata paths are kept. The result is cached as Arrow under ``cache_dir``
    keyed by the file's path, size and mtime; a second call memory-maps the cache. Files over
    32 MiB are parsed by ``num_proc`` processes (default: the CPU count, at most 8).
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
    if num_proc is None:
        num_proc = min(os.cpu_count() or 1, 8) if stat.st_size > 32 * 2**20 else 1
    # the cache key is the fingerprint: hashing a 200,000-row in-memory table would pickle all of it
    ds = Dataset(read_vcr_table(path, images_dir, check_images, num_proc), fingerprint=key)
    from ..utils.checkpoints import atomic_directory

    with atomic_directory(cached) as tmp, _writer_batch_size(20_000):
        ds.save_to_disk(tmp)
    return load_from_disk(cached)


@contextmanager
def _writer_batch_size(n: int):
    """``save_to_disk`` writes ``datasets.config.DEFAULT_MAX_BATCH_SIZE`` (1000) rows per record batch, re-checking
    the types of each; the VCR rows are small, so larger batches write the same file layout several times faster."""
    from datasets import config

    before = config.DEFAULT_MAX_BATCH_SIZE
    config.DEFAULT_MAX_BATCH_SIZE = max(before, n)
    try:
        yield
    finally:
        config.DEFAULT_MAX_BATCH_SIZE = before


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


def _encode_reference(batch: pa.Table, tokenizer, view: str, reference_style: str, max_length, max_objects) -> dict:
    """The straightforward encoding: render each item, run the tokenizer on word lists, map tokens to
    objects through ``word_ids``/``sequence_ids``. Reference for :class:`_FastViewEncoder`, and the path
    for truncated pairs, unusual tokenizers and bad rows (its errors are the documented ones)."""
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
    return {
        "input_ids": _nest(enc["input_ids"], offsets, pa.int32()),
        "token_type_ids": _nest(enc["token_type_ids"], offsets, pa.int8()),
        "attention_mask": _nest(enc["attention_mask"], offsets, pa.int8()),
        "object_ids": _nest(object_ids, offsets, pa.int16()),
        "labels": pa.array([label for _, label in per_item], pa.int64()),
    }


_OUT_TYPES = {"input_ids": pa.int32(), "token_type_ids": pa.int8(), "attention_mask": pa.int8(), "object_ids": pa.int16()}


def _ragged(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenation of ``arange(s, s + l)`` for every (s, l) pair, without a Python loop."""
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, np.int64)
    ends = np.cumsum(lengths)
    return np.arange(total, dtype=np.int64) + np.repeat(starts - (ends - lengths), lengths)


def _exclusive_cumsum(x: np.ndarray) -> np.ndarray:
    out = np.zeros(len(x) + 1, np.int64)
    np.cumsum(x, out=out[1:])
    return out


def _np(a: pa.Array, fill=0) -> np.ndarray:
    if a.null_count:
        a = pc.fill_null(a, fill)
    return a.to_numpy(zero_copy_only=False)


class _FastViewEncoder:
    """Encodes a batch of items into a view with numpy: every distinct word (and object label) of the
    batch is tokenized once, and the pairs are assembled from those pieces by gathers, following the
    tokenizer's own pair template (taken from a probe encoding). Identical to :func:`_encode_reference`
    for tokenizers whose words are tokenized independently of their neighbours (BERT word-level and
    WordPiece, byte-level BPE with ``add_prefix_space``); the first and last items of each batch are
    checked against the reference and any mismatch switches the encoder off. Pairs longer than
    ``max_length`` (truncation) go through the reference path."""

    def __init__(self, tokenizer, view, reference_style, max_length, max_objects):
        self.tokenizer, self.view, self.style = tokenizer, view, reference_style
        self.max_length, self.max_objects = max_length, max_objects
        self.cache: dict[str, np.ndarray] = {}
        self.enabled = max_length is not None and view in VIEWS and reference_style in REFERENCE_STYLES
        self.template = self._template() if self.enabled else None
        self.enabled = self.template is not None

    def _template(self):
        try:
            enc = self.tokenizer([["a"]], [["b"]], is_split_into_words=True, return_token_type_ids=True)
            e = enc[0]
            ids, types, seqs = enc["input_ids"][0], enc["token_type_ids"][0], e.sequence_ids
        except Exception:  # noqa: BLE001 - anything unusual: keep the reference path
            return None
        s0 = [i for i, q in enumerate(seqs) if q == 0]
        s1 = [i for i, q in enumerate(seqs) if q == 1]
        if not s0 or not s1 or s0 != list(range(s0[0], s0[-1] + 1)) or s1 != list(range(s1[0], s1[-1] + 1)) or s0[-1] >= s1[0]:
            return None
        if len({types[i] for i in s0}) != 1 or len({types[i] for i in s1}) != 1:
            return None
        special = lambda r: [(ids[i], types[i]) for i in r]  # noqa: E731
        return {
            "prefix": special(range(0, s0[0])),
            "mid": special(range(s0[-1] + 1, s1[0])),
            "suffix": special(range(s1[-1] + 1, len(ids))),
            "t0": types[s0[0]],
            "t1": types[s1[0]],
        }

    def _word_ids(self, words: list[str]) -> list[np.ndarray]:
        missing = [w for w in dict.fromkeys(words) if w not in self.cache]
        if missing:
            encs = self.tokenizer._tokenizer.encode_batch([[w] for w in missing], is_pretokenized=True, add_special_tokens=False)
            for w, e in zip(missing, encs):
                self.cache[w] = np.asarray(e.ids, np.int64)
        return [self.cache[w] for w in words]

    def __call__(self, batch: pa.Table) -> dict | None:
        n = batch.num_rows
        view = self.view
        col = {name: batch.column(name).combine_chunks() for name in _VIEW_COLUMNS if name != "annot_id"}
        if n == 0:
            return None
        a_lab = col["answer_label"]
        r_lab = col["rationale_label"]
        need_a = view in ("qa2r", "a2r")
        need_r = view == "qr2a"
        if (need_a and a_lab.null_count) or (need_r and r_lab.null_count):
            return None  # the reference path raises the documented error
        for field in ("answer_choices", "rationale_choices", "answer_choices_refs", "rationale_choices_refs"):
            if col[field].null_count or not pc.all(pc.equal(pc.list_value_length(col[field]), N_CHOICES)).as_py():
                return None
        a = _np(a_lab, 0).astype(np.int64)
        r = _np(r_lab, 0).astype(np.int64)
        if np.any((a < 0) | (a >= N_CHOICES)) or np.any((r < 0) | (r >= N_CHOICES)):
            return None
        use_r = view != "q2a"
        # segments: Q_i -> i, A_ik -> n + 4i + k, R_ik -> 5n + 4i + k
        words_parts = [col["question"], col["answer_choices"].flatten()]
        refs_parts = [col["question_refs"], col["answer_choices_refs"].flatten()]
        item = np.arange(n, dtype=np.int64)
        seg_item_parts = [item, np.repeat(item, N_CHOICES)]
        if use_r:
            words_parts.append(col["rationale_choices"].flatten())
            refs_parts.append(col["rationale_choices_refs"].flatten())
            seg_item_parts.append(np.repeat(item, N_CHOICES))
        seg_item = np.concatenate(seg_item_parts)
        seg_n_tok = np.concatenate([_np(pc.list_value_length(w)) for w in words_parts]).astype(np.int64)
        if not np.array_equal(seg_n_tok, np.concatenate([_np(pc.list_value_length(x)) for x in refs_parts])):
            return None
        tok_words = pa.concat_arrays([w.flatten() for w in words_parts])
        tok_refs = pa.concat_arrays([x.flatten() for x in refs_parts])
        if tok_words.null_count or tok_refs.null_count:
            return None
        tok_item = np.repeat(seg_item, seg_n_tok)
        m = _np(pc.list_value_length(tok_refs)).astype(np.int64)
        n_units = np.where(m == 0, 1, 2 * m - 1)
        unit_start = _exclusive_cumsum(n_units)
        seg_unit_off = unit_start[_exclusive_cumsum(seg_n_tok)]
        n_u = int(unit_start[-1])
        # plain words (their own code space), then the separators, then object labels
        denc = pc.dictionary_encode(tok_words)
        word_strings = denc.dictionary.to_pylist() + [",", "and"]
        comma, and_ = len(word_strings) - 2, len(word_strings) - 1
        unit_code = np.zeros(n_u, np.int64)
        unit_obj = np.full(n_u, -1, np.int64)
        plain = m == 0
        unit_code[unit_start[:-1][plain]] = _np(denc.indices)[plain]
        vals = _np(tok_refs.flatten()).astype(np.int64)
        label_strings: list[str] = []
        if len(vals):
            elem_tok = np.repeat(np.arange(len(m)), m)
            elem_j = np.arange(len(vals)) - _exclusive_cumsum(m)[elem_tok]
            elem_item = tok_item[elem_tok]
            n_obj = _np(pc.list_value_length(col["objects"])).astype(np.int64)
            if np.any(vals < 0) or np.any(vals >= n_obj[elem_item]):
                return None
            pos = unit_start[elem_tok] + 2 * elem_j
            unit_obj[pos] = vals
            sep = elem_j > 0
            unit_code[pos[sep] - 1] = np.where(elem_j[sep] == m[elem_tok][sep] - 1, and_, comma)
            base = len(word_strings)
            if self.style == "index":
                top = int(vals.max()) + 1
                label_strings = [f"[{k}]" for k in range(top)]
                unit_code[pos] = base + vals
            else:
                names = col["objects"]
                nenc = pc.dictionary_encode(names.flatten())
                name_strings = nenc.dictionary.to_pylist()
                name_code = _np(nenc.indices).astype(np.int64)
                name_off = _exclusive_cumsum(_np(pc.list_value_length(names)).astype(np.int64))
                codes = name_code[name_off[elem_item] + vals]
                person = name_strings.index("person") if "person" in name_strings else -1
                g = len(name_strings)
                codes = np.where(codes == person, g + vals % len(GENDER_NEUTRAL_NAMES), codes)
                label_strings = name_strings + list(GENDER_NEUTRAL_NAMES)
                unit_code[pos] = base + codes
        pieces = self._word_ids(word_strings)
        for label in label_strings:
            parts = self._word_ids(label.split())
            pieces.append(np.concatenate(parts) if parts else np.zeros(0, np.int64))
        code_len = np.array([len(x) for x in pieces], np.int64)
        code_start = _exclusive_cumsum(code_len)[:-1]
        code_flat = np.concatenate(pieces) if pieces else np.zeros(0, np.int64)
        lu = code_len[unit_code]
        tok_ids = code_flat[_ragged(code_start[unit_code], lu)]
        tok_obj = np.repeat(unit_obj, lu)
        cl = _exclusive_cumsum(lu)
        seg_start = cl[seg_unit_off[:-1]]
        seg_len = cl[seg_unit_off[1:]] - seg_start
        # the pool: every segment's tokens, then the special tokens one by one
        tpl = self.template
        specials = tpl["prefix"] + tpl["mid"] + tpl["suffix"]
        special_pos = len(tok_ids) + np.arange(len(specials))
        pool_ids = np.concatenate([tok_ids, np.array([i for i, _ in specials], np.int64)])
        pool_obj = np.concatenate([tok_obj, np.full(len(specials), -1, np.int64)])
        # pairs (queries: one or two segments; response: one segment)
        k = np.arange(N_CHOICES)
        A = lambda i, c: n + N_CHOICES * i + c  # noqa: E731
        R = lambda i, c: 5 * n + N_CHOICES * i + c  # noqa: E731
        ii = np.repeat(item, N_CHOICES)
        kk = np.tile(k, n)
        if view == "q2a":
            queries, resp, labels = [ii], A(ii, kk), np.where(_np(pc.is_null(a_lab)), -100, a)
        elif view == "qa2r":
            queries, resp, labels = [ii, A(ii, a[ii])], R(ii, kk), np.where(_np(pc.is_null(r_lab)), -100, r)
        elif view == "qr2a":
            queries, resp, labels = [ii, R(ii, r[ii])], A(ii, kk), np.where(_np(pc.is_null(a_lab)), -100, a)
        elif view == "a2r":
            queries, resp, labels = [A(ii, a[ii])], R(ii, kk), np.where(_np(pc.is_null(r_lab)), -100, r)
        else:  # joint: pair j * 4 + k holds answer j and rationale k
            ii = np.repeat(item, N_CHOICES * N_CHOICES)
            jj = np.tile(np.repeat(k, N_CHOICES), n)
            kk = np.tile(k, N_CHOICES * n)
            queries, resp = [ii, A(ii, jj)], R(ii, kk)
            missing = _np(pc.or_(pc.is_null(a_lab), pc.is_null(r_lab)))
            labels = np.where(missing, -100, N_CHOICES * a + r)
        per_item = len(resp) // n
        starts, lens, types = [], [], []
        n_pairs = len(resp)
        s = 0
        for group, key in ((tpl["prefix"], None), (None, "q"), (tpl["mid"], None), (None, "r"), (tpl["suffix"], None)):
            if key is None:
                for j, (_, t) in enumerate(group):
                    starts.append(np.full(n_pairs, special_pos[s + j]))
                    lens.append(np.ones(n_pairs, np.int64))
                    types.append(np.full(n_pairs, t))
                s += len(group)
            else:
                for seg in queries if key == "q" else [resp]:
                    starts.append(seg_start[seg])
                    lens.append(seg_len[seg])
                    types.append(np.full(n_pairs, tpl["t0"] if key == "q" else tpl["t1"]))
        starts, lens, types = np.stack(starts, 1), np.stack(lens, 1), np.stack(types, 1)
        pair_len = lens.sum(1)
        idx = _ragged(starts.ravel(), lens.ravel())
        ids = pool_ids[idx]
        obj = pool_obj[idx]
        if self.max_objects is not None:
            obj = np.where(obj < self.max_objects, obj, -1)
        typ = np.repeat(types.ravel(), lens.ravel())
        inner = pa.array(_exclusive_cumsum(pair_len).astype(np.int32))
        outer = pa.array((np.arange(n + 1) * per_item).astype(np.int32))

        def nest(values, type_):
            return pa.ListArray.from_arrays(outer, pa.ListArray.from_arrays(inner, pa.array(values.astype(type_.to_pandas_dtype()), type_)))

        out = {
            "input_ids": nest(ids, pa.int32()),
            "token_type_ids": nest(typ, pa.int8()),
            "attention_mask": nest(np.ones(len(ids), np.int8), pa.int8()),
            "object_ids": nest(obj, pa.int16()),
            "labels": pa.array(labels.astype(np.int64), pa.int64()),
        }
        overflow = np.flatnonzero((pair_len > self.max_length).reshape(n, per_item).any(1))
        return {"out": out, "overflow": overflow}


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
    from datasets.fingerprint import Hasher

    tokenizer_hash = Hasher.hash(tokenizer)  # before any call changes its truncation settings
    fast = _FastViewEncoder(tokenizer, view, reference_style, max_length, max_objects)

    def encode(batch: pa.Table) -> pa.Table:
        with _no_gc():
            out = _encode(batch)
        for column in keep_columns_present:
            out[column] = batch.column(column)
        # Arrow in, Arrow out: no per-row Python encoding by datasets on the way to the cache file
        return pa.table(out)

    def reference(batch: pa.Table) -> dict:
        return _encode_reference(batch, tokenizer, view, reference_style, max_length, max_objects)

    def _encode(batch: pa.Table) -> dict:
        result = fast(batch) if fast.enabled else None
        if result is None:
            return reference(batch)
        out, overflow = result["out"], result["overflow"]
        n = batch.num_rows
        check = sorted({0, n - 1} - set(overflow.tolist()))
        if check:
            expected = pa.table(reference(batch.take(check))).to_pylist()
            got = pa.table({k: v.take(check) for k, v in out.items()}).to_pylist()
            if expected != got:
                fast.enabled = False  # this tokenizer does not tokenize words independently: reference path
                return reference(batch)
        if len(overflow):  # truncated pairs: the tokenizer's own truncation, spliced in
            slow = reference(batch.take(overflow))
            order = np.arange(n)
            order[overflow] = n + np.arange(len(overflow))
            out = {k: pa.concat_arrays([out[k], slow[k].cast(out[k].type)]).take(pa.array(order)) for k in out}
        return out

    keep = set(keep_columns) | {"boxes", "image_path", "img_fn", "width", "height"}
    keep_columns_present = [c for c in dataset.column_names if c in keep]

    # an explicit fingerprint: letting datasets hash the closures walks their byte code (slow with dill)
    fingerprint = Hasher.hash(
        ["hf_vcr.tokenize_view", 2, dataset._fingerprint, tokenizer_hash, view, max_length, reference_style,
         max_objects, keep_columns_present]
    )
    return dataset.with_format("arrow").map(
        encode,
        batched=True,
        batch_size=5000,  # the fast encoder works on whole batches: fewer, larger ones cost less per item
        writer_batch_size=5000,
        num_proc=num_proc,
        remove_columns=dataset.column_names,
        load_from_cache_file=load_from_cache_file,
        new_fingerprint=fingerprint,
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
