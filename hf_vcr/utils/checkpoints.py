"""Atomic writes and resumable checkpoints (the lock and the run guard: :mod:`hf_vcr.utils.run_guard`).

A Trainer checkpoint directory only counts once its completion marker exists: a run
killed while writing ``checkpoint-N`` resumes from the previous complete one, and the
half-written directory is removed. hf_vcr writes ``.hf_vcr_writing`` into a checkpoint before
anything else, so a checkpoint with neither file was written by something else (a plain
``Trainer``): it is kept and reported, never deleted and never resumed from.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import warnings
from contextlib import contextmanager
from typing import Any, Iterator

COMPLETE_MARKER = "checkpoint_complete"
WRITING_MARKER = ".hf_vcr_writing"
TMP_PREFIX = ".tmp-"
_CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")


def mark_complete(checkpoint_dir: str) -> None:
    atomic_write_text(os.path.join(checkpoint_dir, COMPLETE_MARKER), "ok\n")


def is_complete(checkpoint_dir: str) -> bool:
    return os.path.isfile(os.path.join(checkpoint_dir, COMPLETE_MARKER))


def is_foreign(checkpoint_dir: str) -> bool:
    """A checkpoint hf_vcr did not write (no marker of either kind): a plain ``Trainer``'s, or copied in by hand."""
    return not is_complete(checkpoint_dir) and not os.path.exists(os.path.join(checkpoint_dir, WRITING_MARKER))


def list_checkpoints(output_dir: str) -> list[tuple[int, str]]:
    """``(step, path)`` of every ``checkpoint-N`` folder, oldest step first."""
    if not os.path.isdir(output_dir):
        return []
    found = []
    for name in os.listdir(output_dir):
        m = _CHECKPOINT_RE.match(name)
        path = os.path.join(output_dir, name)
        if m and os.path.isdir(path):
            found.append((int(m.group(1)), path))
    return sorted(found)


def find_resumable_checkpoint(output_dir: str, remove_incomplete: bool = True) -> str | None:
    """Newest complete ``checkpoint-N`` in ``output_dir`` (None if there is none).

    With ``remove_incomplete`` (the main process, holding the output lock), checkpoints hf_vcr started but did not
    finish are removed; checkpoints without any hf_vcr marker are kept, reported on stderr and not resumed from.
    """
    steps = []
    for step, path in list_checkpoints(output_dir):
        if is_complete(path):
            steps.append((step, path))
        elif is_foreign(path):
            if remove_incomplete:
                warnings.warn(f"{path} has no hf_vcr completion marker (written by a plain Trainer?): kept as it is and "
                              f"not resumed from; move it away or delete it to silence this warning", stacklevel=2)
        elif remove_incomplete:
            shutil.rmtree(path, ignore_errors=True)
    return max(steps)[1] if steps else None


def rotate_complete_checkpoints(output_dir: str, save_total_limit: int | None, keep: str | None = None) -> list[str]:
    """Delete the oldest *complete* checkpoints beyond ``save_total_limit`` (never the newest, never ``keep``, e.g.
    the best model's); incomplete and foreign ones are not counted and not touched. Returns the deleted paths.

    transformers' own rotation deletes the older checkpoint before hf_vcr has marked the new one complete, so a kill
    in between left nothing to resume from with ``save_total_limit 1``; hf_vcr rotates only after marking."""
    if not save_total_limit or save_total_limit <= 0:
        return []
    complete = [path for _, path in list_checkpoints(output_dir) if is_complete(path)]
    protected = {os.path.abspath(complete[-1])} if complete else set()
    if keep:
        protected.add(os.path.abspath(keep))
    excess = len(complete) - max(save_total_limit, len(protected))
    deleted = []
    for path in complete:
        if excess <= 0:
            break
        if os.path.abspath(path) in protected:
            continue
        shutil.rmtree(path, ignore_errors=True)
        deleted.append(path)
        excess -= 1
    return deleted


def remove_stale_temporaries(root: str) -> list[str]:
    """Remove the ``.tmp-*`` files and folders that killed atomic writes left anywhere under ``root``.

    Only call it while holding ``root``'s output lock: an atomic write of a live run looks the same."""
    removed = []
    for dirpath, dirnames, filenames in os.walk(root):
        for name in list(dirnames):
            if name.startswith(TMP_PREFIX):
                shutil.rmtree(os.path.join(dirpath, name), ignore_errors=True)
                dirnames.remove(name)
                removed.append(os.path.join(dirpath, name))
        for name in filenames:
            if name.startswith(TMP_PREFIX):
                try:
                    os.remove(os.path.join(dirpath, name))
                    removed.append(os.path.join(dirpath, name))
                except FileNotFoundError:
                    pass
    return removed


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
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=TMP_PREFIX, suffix=os.path.basename(path))
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600: the file gets the mode open() would give it
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
    tmp = tempfile.mkdtemp(dir=parent, prefix=TMP_PREFIX + os.path.basename(path))
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp creates 0700: the folder gets the mode mkdir would give it
    try:
        yield tmp
        honour_umask(tmp)
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


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def honour_umask(path: str) -> None:
    """Give ``path`` (a file, or a folder and everything under it) the mode a plain ``open()`` / ``mkdir`` gives under
    the current umask. safetensors (and ``tempfile``) create files 0600 / folders 0700 whatever the umask, so a model
    saved by one user of a shared machine could not be read by the others."""
    mask = _umask()
    if os.path.isfile(path):
        os.chmod(path, 0o666 & ~mask)
        return
    for dirpath, _, filenames in os.walk(path):
        os.chmod(dirpath, 0o777 & ~mask)
        for name in filenames:
            full = os.path.join(dirpath, name)
            if not os.path.islink(full):
                os.chmod(full, 0o666 & ~mask)


# --------------------------------------------------------------------------- test-only kill points
KILL_ENV = "HF_VCR_TEST_KILL_AT"


def kill_point_for_tests(name: str, step: int | None = None) -> None:
    """TEST-ONLY: ``os.kill(os.getpid(), SIGKILL)`` when ``$HF_VCR_TEST_KILL_AT`` names this point.

    The resume tests (tests/resume/) set e.g. ``HF_VCR_TEST_KILL_AT="before_mark:4"`` to kill a run
    deterministically between writing checkpoint-4 and marking it complete. Points: ``step:N`` (inside
    optimizer step N, after the backward), ``before_mark:N`` (checkpoint-N written by every process, not yet
    marked complete), ``after_save:N`` (checkpoint-N complete, older ones rotated). ``rank:R@`` before a point
    limits it to one process (``rank:1@step:3``). Unset (always, outside tests), this is a dictionary look-up.
    """
    spec = os.environ.get(KILL_ENV)
    if not spec:
        return
    for item in spec.split(","):
        item = item.strip()
        if item.startswith("rank:"):
            rank, _, item = item[len("rank:"):].partition("@")
            if str(os.environ.get("RANK", "0")) != rank:
                continue
        point, _, at = item.partition(":")
        if point == name and (not at or step is None or int(at) == step):
            import signal

            os.kill(os.getpid(), signal.SIGKILL)
