"""Reading a csv file with a header, with errors that name the file, the line and what is wrong.

UTF-8 (a byte-order mark is allowed), fields of any size (the ``csv`` module's default limit of 128 KiB
is a safety valve for untrusted streams, not a property of the format), every row as wide as the header.
"""

from __future__ import annotations

import csv
import io
import os
import sys
from contextlib import contextmanager
from typing import Iterator, Sequence

from .json_files import decode_utf8


@contextmanager
def _any_field_size():
    before = csv.field_size_limit()
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    try:
        yield
    finally:
        csv.field_size_limit(before)


def read_csv_rows(
    path: str, what: str, error: type[Exception] = ValueError, required: Sequence[str] = ()
) -> Iterator[tuple[int, dict[str, str]]]:
    """Yield ``(line number, row)`` of a csv file whose header holds every column in ``required``.

    A missing file is ``FileNotFoundError`` naming ``what``; an empty file, bad UTF-8, a missing column or a
    row with a different number of fields is ``error`` naming the file and line.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what} not found: {path}")
    with open(path, "rb") as f:
        text = decode_utf8(f.read(), path, error)
    if not text.strip():
        raise error(f"{path}: empty file (expected a csv {what} with a header line)")
    with _any_field_size():
        reader = csv.reader(io.StringIO(text, newline=""))
        try:
            header = [h.strip() for h in next(reader)]
            missing = [c for c in required if c not in header]
            if missing:
                raise error(f"{path}, line 1: missing columns {missing} (header: {header})")
            for fields in reader:
                if not fields or not any(x.strip() for x in fields):
                    continue
                if len(fields) != len(header):
                    raise error(f"{path}, line {reader.line_num}: {len(fields)} fields, expected {len(header)} as in the header")
                yield reader.line_num, dict(zip(header, fields))
        except csv.Error as e:
            raise error(f"{path}, line {reader.line_num}: malformed csv: {e}") from None
