"""Reading JSON strictly, with errors that name the file, the line and what was expected.

Strict means: UTF-8 (a leading byte-order mark is allowed), no repeated key in an object (``json`` would
silently keep the last value), no ``NaN`` / ``Infinity`` (not JSON; they would become scores or labels).
"""

from __future__ import annotations

import json
import math
import os
import re
from typing import Any


def decode_utf8(raw: bytes, path: str, error: type[Exception] = ValueError, first_line: int = 1) -> str:
    """``raw`` as text (a UTF-8 byte-order mark dropped); invalid UTF-8 is ``error`` naming the file and line."""
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = first_line + raw.count(b"\n", 0, e.start)
        raise error(f"{path}, line {line}: not valid UTF-8 (byte {raw[e.start:e.start + 1]!r} at offset {e.start})") from None


def _line_of(text: str, pattern: str) -> int | None:
    hits = [m.start() for m in re.finditer(pattern, text)]
    return text.count("\n", 0, hits[-1]) + 1 if hits else None


def _reject_repeated_keys(pairs: list[tuple[str, Any]]) -> dict:
    out = {}
    for key, value in pairs:
        if key in out:
            raise _RepeatedKey(key)
        out[key] = value
    return out


class _RepeatedKey(Exception):
    pass


class _NotJsonConstant(Exception):
    pass


def _reject_constant(name: str):
    raise _NotJsonConstant(name)


def loads_strict(text: str, path: str, error: type[Exception] = ValueError, first_line: int = 1) -> Any:
    """``json.loads`` that refuses repeated keys and NaN/Infinity; errors are ``error`` naming ``path`` and the line."""
    try:
        return json.loads(text, object_pairs_hook=_reject_repeated_keys, parse_constant=_reject_constant)
    except json.JSONDecodeError as e:
        raise error(f"{path}, line {first_line + e.lineno - 1}: malformed JSON at column {e.colno}: {e.msg}") from None
    except _RepeatedKey as e:
        key = e.args[0]
        line = _line_of(text, re.escape(json.dumps(key)) + r"\s*:")
        where = f"{path}, line {first_line + line - 1}" if line else path
        raise error(f"{where}: key {key!r} appears twice in one JSON object (which value is meant?)") from None
    except _NotJsonConstant as e:
        line = _line_of(text, r"(?<![\w\"])" + re.escape(e.args[0]) + r"(?![\w\"])")
        where = f"{path}, line {first_line + line - 1}" if line else path
        raise error(f"{where}: {e.args[0]} is not a JSON value (numbers must be finite)") from None


def load_json_file(path: str, what: str, error: type[Exception] = ValueError, expect: type | None = None, expected: str = "") -> Any:
    """Parse ``path`` strictly (see the module doc); a missing file is ``FileNotFoundError`` naming ``what``,
    anything malformed is ``error`` naming the file, line and column, and with ``expect`` a top-level value of
    another type is ``error`` saying ``expected`` (e.g. "a JSON array of questions")."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what} not found: {path}")
    with open(path, "rb") as f:
        raw = f.read()
    if not raw.strip():
        raise error(f"{path}: empty file (expected {expected or what})")
    data = loads_strict(decode_utf8(raw, path, error), path, error)
    if expect is not None and not isinstance(data, expect):
        raise error(f"{path}: expected {expected or expect.__name__}, got {type(data).__name__}")
    return data


def strict_json_value(value: Any, digits: int | None = None) -> Any:
    """``value`` with every NaN / inf float (undefined) as None, floats rounded to ``digits`` when given,
    numpy scalars as Python numbers: ready for ``json.dumps(..., allow_nan=False)``."""
    if isinstance(value, dict):
        return {k: strict_json_value(v, digits) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json_value(v, digits) for v in value]
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", None) == 0:
        value = value.item()  # a numpy scalar
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        return round(value, digits) if digits is not None else value
    return value


def dumps_strict(value: Any, digits: int | None = None) -> str:
    """One line of strict JSON (null for undefined numbers); see :func:`strict_json_value`."""
    return json.dumps(strict_json_value(value, digits), allow_nan=False)


def read_stamp(path: str) -> Any:
    """A marker file hf_vcr wrote itself (e.g. the parameters of a generated corpus): its JSON, or None when it is
    missing, empty or unreadable (a run killed while writing it), which means "not done yet"."""
    try:
        with open(path, "rb") as f:
            return json.loads(f.read().decode("utf-8"))
    except (OSError, ValueError):
        return None
