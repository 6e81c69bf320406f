"""Atomic writes and resumable checkpoints.

A Trainer checkpoint directory only counts once its completion marker exists: a run
killed while writing ``checkpoint-N`` resumes from the previous complete one, and the
half-written directory is removed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from contextlib import contextmanager
from typing import Any, Iterator

COMPLETE_MARKER = "checkpoint_complete"
_CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")


def mark_complete(checkpoint_dir: str) -> None:
    atomic_write_text(os.path.join(checkpoint_dir, COMPLETE_MARKER), "ok\n")


def is_complete(checkpoint_dir: str) -> bool:
    return os.path.isfile(os.path.join(checkpoint_dir, COMPLETE_MARKER))


def find_resumable_checkpoint(output_dir: str, remove_incomplete: bool = True) -> str | None:
    """Newest complete ``checkpoint-N`` in ``output_dir`` (None if there is none)."""
    if not os.path.isdir(output_dir):
        return None
    steps = []
    for name in os.listdir(output_dir):
        m = _CHECKPOINT_RE.match(name)
        path = os.path.join(output_dir, name)
        if m and os.path.isdir(path):
            if is_complete(path):
                steps.append((int(m.group(1)), path))
            elif remove_incomplete:
                shutil.rmtree(path, ignore_errors=True)
    return max(steps)[1] if steps else None


def atomic_write_text(path: str, text: str) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)


def atomic_write_json(path: str, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


@contextmanager
def atomic_path(path: str) -> Iterator[str]:
    """Yield a temporary file path beside ``path``; it replaces ``path`` only if the block succeeds."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=os.path.basename(path))
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


@contextmanager
def atomic_directory(path: str) -> Iterator[str]:
    """Yield a temporary directory beside ``path``; it replaces ``path`` only if the block succeeds."""
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(dir=parent, prefix=".tmp-" + os.path.basename(path))
    try:
        yield tmp
        if os.path.isdir(path):
            old = tmp + ".old"
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    finally:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp, ignore_errors=True)


def save_pretrained_atomic(model, path: str, **kwargs) -> None:
    """``model.save_pretrained(path)`` that never leaves a half-written directory."""
    with atomic_directory(path) as tmp:
        model.save_pretrained(tmp, **kwargs)
