"""Reading a whole JSON file with errors that name the file, the line and what was expected."""

from __future__ import annotations

import json
import os
from typing import Any


def load_json_file(path: str, what: str, error: type[Exception] = ValueError, expect: type | None = None, expected: str = "") -> Any:
    """Parse ``path``; a missing file is ``FileNotFoundError`` naming ``what``, malformed JSON is ``error`` naming
    the file, line and column, and with ``expect`` a top-level value of another type is ``error`` saying
    ``expected`` (e.g. "a JSON array of questions")."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what} not found: {path}")
    with open(path, encoding="utf-8") as f:
        try:
            data = json.load(f)
        except json.JSONDecodeError as e:
            raise error(f"{path}: malformed JSON at line {e.lineno}, column {e.colno}: {e.msg}") from e
    if expect is not None and not isinstance(data, expect):
        raise error(f"{path}: expected {expected or expect.__name__}, got {type(data).__name__}")
    return data
