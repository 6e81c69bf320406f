"""The VCR 1.0 file format, checked item by item: the reference rules of what a valid VCR file is.

Light on purpose (stdlib + orjson): ``hf-vcr evaluate vcr`` reads annotations through here without
importing pyarrow or datasets, and :mod:`hf_vcr.data.vcr`'s vectorised reader must accept exactly the
files :func:`enumerate_items` accepts (it falls back to this module for the precise error).

An item (one line of ``{split}.jsonl``) is a JSON object with

* ``annot_id`` (non-empty string, unique in the file), ``img_fn`` (string), ``objects`` (list of strings);
* ``question`` and 4 ``answer_choices`` / 4 ``rationale_choices``: lists of tokens, each a word (string)
  or a non-empty list of object indices (ints in ``[0, len(objects))``);
* optionally ``movie`` / ``metadata_fn`` (string or null) and ``answer_label`` / ``rationale_label``
  (int 0..3; absent in the test split).

Lines are UTF-8 JSON objects in which no field of the format is repeated; fields outside the format are not read
(whatever they hold). Blank lines are skipped; a file without items is an error.
"""

from __future__ import annotations

import json
import math
import os
import re
from typing import Any, Iterator

try:  # orjson parses the large official files several times faster than json
    from orjson import JSONDecodeError as _FastDecodeError, loads as _fast_loads
except ImportError:  # pragma: no cover - orjson is an install requirement
    _fast_loads, _FastDecodeError = json.loads, json.JSONDecodeError

from ..utils.json_files import decode_utf8, loads_strict

N_CHOICES = 4
REQUIRED_FIELDS = ("annot_id", "objects", "img_fn", "question", "answer_choices", "rationale_choices")
OPTIONAL_STRING_FIELDS = ("movie", "metadata_fn")
LABEL_FIELDS = ("answer_label", "rationale_label")
FIELDS = frozenset(REQUIRED_FIELDS + OPTIONAL_STRING_FIELDS + LABEL_FIELDS)


class VcrFormatError(ValueError):
    """A VCR file does not follow the official format; the message names file, line and problem."""


def _where(path: str, line_no: int | None) -> str:
    return f"{path}, line {line_no}" if line_no is not None else path


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _check_refs(tokens: Any, n_objects: int, field: str, where: str) -> None:
    if not isinstance(tokens, list):
        raise VcrFormatError(f"{where}: {field} must be a list of tokens, got {type(tokens).__name__}")
    for tok in tokens:
        if isinstance(tok, str):
            continue
        if not isinstance(tok, list) or not tok or not all(_is_int(i) for i in tok):
            raise VcrFormatError(
                f"{where}: {field} has a token that is neither a word nor a non-empty list of object indices: {tok!r}"
            )
        for i in tok:
            if not 0 <= i < n_objects:
                raise VcrFormatError(
                    f"{where}: {field} references object {i}, out of range for the item's {n_objects} objects"
                )


def validate_item(item: Any, path: str, line_no: int | None = None) -> dict:
    """Check one raw VCR item; raise :class:`VcrFormatError` naming the file, line and annot_id."""
    where = _where(path, line_no)
    if not isinstance(item, dict):
        raise VcrFormatError(f"{where}: an item must be a JSON object, got {type(item).__name__}")
    for key in REQUIRED_FIELDS:
        if key not in item:
            raise VcrFormatError(f"{where}: missing field {key!r}")
    if not isinstance(item["annot_id"], str) or not item["annot_id"]:
        raise VcrFormatError(f"{where}: annot_id must be a non-empty string, got {item['annot_id']!r}")
    where = f"{where} ({item['annot_id']})"
    if not isinstance(item["img_fn"], str):
        raise VcrFormatError(f"{where}: img_fn must be a string, got {type(item['img_fn']).__name__}")
    for key in OPTIONAL_STRING_FIELDS:
        if item.get(key) is not None and not isinstance(item[key], str):
            raise VcrFormatError(f"{where}: {key} must be a string, got {type(item[key]).__name__}")
    objects = item["objects"]
    if not isinstance(objects, list) or not all(isinstance(o, str) for o in objects):
        raise VcrFormatError(f"{where}: objects must be a list of object names (strings), got {objects!r}"[:300])
    n_objects = len(objects)
    _check_refs(item["question"], n_objects, "question", where)
    for field in ("answer_choices", "rationale_choices"):
        choices = item[field]
        if not isinstance(choices, list) or len(choices) != N_CHOICES:
            got = len(choices) if isinstance(choices, list) else type(choices).__name__
            raise VcrFormatError(f"{where}: wrong number of choices: {field} has {got}, expected {N_CHOICES}")
        for k, choice in enumerate(choices):
            _check_refs(choice, n_objects, f"{field}[{k}]", where)
    for field in LABEL_FIELDS:
        if field in item and not (_is_int(item[field]) and 0 <= item[field] < N_CHOICES):
            raise VcrFormatError(f"{where}: {field} must be 0..3, got {item[field]!r}")
    return item


class _Object(dict):
    """A parsed JSON object that remembers the keys written more than once in it."""

    repeated: tuple = ()


def _object(pairs: list) -> _Object:
    obj = _Object(pairs)
    if len(obj) != len(pairs):
        seen: set = set()
        obj.repeated = tuple(k for k, _ in pairs if k in seen or seen.add(k))
    return obj


_KEY = re.compile(rb'"\s*:')  # how every key of an object ends (strings may also hold it: then the exact parse below)
_NOT_PARSED = object()


def parse_line(line: bytes, path: str, line_no: int) -> Any:
    """One jsonl line, parsed; errors name the file and line. Invalid UTF-8 and a repeated field of the format
    are errors; fields outside the format are not read, whatever they hold (NaN, repeated keys inside them),
    as the vectorised reader does not read them either."""
    try:
        item = _fast_loads(line)
    except _FastDecodeError:
        item = _NOT_PARSED  # malformed, bad UTF-8, or NaN somewhere: the standard parser says which
    # orjson keeps the last of repeated keys: a line that writes more keys than the item has is parsed again
    if item is _NOT_PARSED or not isinstance(item, dict) or len(_KEY.findall(line)) != len(item):
        text = decode_utf8(line, path, VcrFormatError, line_no)
        try:
            item = json.loads(text, object_pairs_hook=_object)
        except json.JSONDecodeError as e:
            raise VcrFormatError(f"{path}, line {line_no}: malformed JSON at column {e.colno}: {e.msg}") from None
        repeated = [k for k in getattr(item, "repeated", ()) if k in FIELDS]
        if repeated:
            raise VcrFormatError(f"{path}, line {line_no}: key {repeated[0]!r} appears twice in one JSON object (which value is meant?)")
    return item


def enumerate_items(path: str, start: int = 0, end: int | None = None, first_line: int = 1) -> Iterator[tuple[int, dict]]:
    """Yield ``(line number, validated raw item)`` for a VCR jsonl file (or the lines in bytes ``start:end``,
    the first of which is line ``first_line``). A repeated annot_id (within the lines read) is an error."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"VCR annotations not found: {path}")
    seen: dict[str, int] = {}
    with open(path, "rb") as f:
        f.seek(start)
        position = start
        for line_no, line in enumerate(f, start=first_line):
            if end is not None and position >= end:
                break
            position += len(line)
            if line_no == 1 and line.startswith(b"\xef\xbb\xbf"):
                line = line[3:]
            if not line.strip():
                continue
            item = validate_item(parse_line(line, path, line_no), path, line_no)
            annot_id = item["annot_id"]
            if annot_id in seen:
                raise VcrFormatError(f"{path}, line {line_no} ({annot_id}): duplicate annot_id (first on line {seen[annot_id]})")
            seen[annot_id] = line_no
            yield line_no, item


def read_vcr_jsonl(path: str) -> Iterator[dict]:
    """Yield the validated raw items of a VCR jsonl file; a file without items is an error."""
    n = 0
    for _, item in enumerate_items(path):
        n += 1
        yield item
    if n == 0:
        raise VcrFormatError(f"{path}: no VCR items (empty file)")


def resolve_under(root: str, relative: str, what: str, where: str) -> str:
    """``root/relative``, refusing paths that escape ``root`` (absolute paths, ``..``, symlinks)."""
    if not isinstance(relative, str) or not relative:
        raise VcrFormatError(f"{where}: {what} must be a non-empty relative path, got {relative!r}")
    root_real = os.path.realpath(root)
    path = os.path.realpath(os.path.join(root_real, relative))
    if os.path.isabs(relative) or os.path.commonpath([root_real, path]) != root_real:
        raise VcrFormatError(f"{where}: {what} {relative!r} escapes the image root {root}")
    return path


def _finite_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def read_metadata(path: str, n_objects: int, where: str) -> dict:
    """Read and check a ``vcr1images/<metadata_fn>`` file: ``boxes`` (one list of at least 4 finite numbers per
    object), ``names``, positive integer ``width`` / ``height``."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{where}: metadata file not found: {path}")
    with open(path, "rb") as f:
        raw = f.read()
    try:
        meta = loads_strict(decode_utf8(raw, path, VcrFormatError), path, VcrFormatError)
    except VcrFormatError as e:
        raise VcrFormatError(f"{e} (metadata of {where})") from None
    if not isinstance(meta, dict):
        raise VcrFormatError(f"{path}: metadata ({where}) must be a JSON object, got {type(meta).__name__}")
    for key in ("boxes", "names", "width", "height"):
        if key not in meta:
            raise VcrFormatError(f"{path}: metadata ({where}) lacks {key!r}")
    boxes = meta["boxes"]
    if not isinstance(boxes, list):
        raise VcrFormatError(f"{path}: metadata ({where}): boxes must be a list, got {type(boxes).__name__}")
    if len(boxes) != n_objects:
        raise VcrFormatError(f"{path}: {len(boxes)} boxes for an item with {n_objects} objects ({where})")
    for k, box in enumerate(boxes):
        if not isinstance(box, list) or len(box) < 4 or not all(_finite_number(v) for v in box):
            raise VcrFormatError(f"{path}: metadata ({where}): box {k} must be at least 4 finite numbers, got {box!r}")
    for key in ("width", "height"):
        if not (_is_int(meta[key]) and meta[key] > 0):
            raise VcrFormatError(f"{path}: metadata ({where}): {key} must be a positive integer, got {meta[key]!r}")
    return meta
