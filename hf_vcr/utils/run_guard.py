"""One run per output directory, and what a flow checks when it starts and marks when it ends.

:func:`acquire_output_lock` takes an exclusive ``fcntl.flock`` on ``<output_dir>/.hf_vcr.lock`` (the OS drops it
when the process dies, so a killed run never leaves it stuck); :func:`guard_run` adds the rest of what a flow
checks at start (stale temporary folders, a finished run, changed arguments); :func:`mark_run_complete` writes the
run's completion marker at its end.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from contextlib import contextmanager
from typing import Any, Iterator

from .checkpoints import (
    atomic_write_json,
    find_resumable_checkpoint,
    remove_stale_temporaries,
)

RUN_MARKER = "run_complete.json"  # written last by a finished run: its arguments and metrics
RUN_ARGS = "hf_vcr_run.json"  # written first: the arguments of the run that owns this output_dir
LOCK_NAME = ".hf_vcr.lock"


class OutputLockedError(RuntimeError):
    """Another live process holds the output directory's lock."""


_held_locks: dict[str, int] = {}  # realpath of the lock file -> open fd (kept open for the life of the process)


def acquire_lock(lock_path: str, target: str, what: str = "run") -> str:
    """Take the exclusive lock ``lock_path`` (guarding ``target``) for the rest of this process (idempotent within a process).

    ``fcntl.flock``: the OS releases it when the process exits or is killed, so a lock is never left stuck. Raises
    :class:`OutputLockedError` (one line naming ``target`` and the holder's pid) when another process holds it."""
    import fcntl

    path = os.path.realpath(lock_path)
    if path in _held_locks:
        return path
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        try:
            holder = os.pread(fd, 64, 0).decode("ascii", "replace").strip() or "unknown"
        finally:
            os.close(fd)
        raise OutputLockedError(
            f"{os.path.abspath(target)} is in use by another {what} (pid {holder}): two runs on one output would "
            "corrupt it; wait for it to finish or choose another output") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    _held_locks[path] = fd
    return path


def holds_lock(lock_path: str) -> bool:
    """Whether this process holds ``lock_path`` (taken with :func:`acquire_lock`)."""
    return os.path.realpath(lock_path) in _held_locks


def release_lock(lock_path: str) -> None:
    """Release a lock taken by :func:`acquire_lock` in this process (exiting releases it too)."""
    import fcntl

    fd = _held_locks.pop(os.path.realpath(lock_path), None)
    if fd is not None:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def acquire_output_lock(output_dir: str, what: str = "run") -> str:
    """The lock of a run's ``output_dir`` (``<output_dir>/.hf_vcr.lock``, see :func:`acquire_lock`). In a multi-process
    launch only the main process takes it: the other ranks of the same launch would otherwise refuse their own run."""
    return acquire_lock(os.path.join(output_dir, LOCK_NAME), output_dir, what)


def release_output_lock(output_dir: str) -> None:
    release_lock(os.path.join(output_dir, LOCK_NAME))


@contextmanager
def holding_output_lock(output_dir: str, take: bool = True) -> Iterator[None]:
    """Hold ``output_dir``'s lock for the block (released after it unless this process held it already); with
    ``take=False`` (the other ranks of a launch) do nothing."""
    lock = os.path.join(output_dir, LOCK_NAME)
    mine = take and not holds_lock(lock)
    if mine:
        acquire_output_lock(output_dir)
    try:
        yield
    finally:
        if mine:
            release_output_lock(output_dir)


# fields that do not change what a run computes: where it logs and saves, whether and where it pushes, how often it
# checkpoints, and how the launch is spread over processes
_UNFINGERPRINTED = re.compile(
    r"^(output_dir|logging_dir|overwrite_output_dir|resume_from_checkpoint|run_name|report_to|disable_tqdm|"
    r"push_to_hub|hub_.*|logging_.*|log_.*|save_.*|ddp_timeout|local_rank|dataloader_num_workers|"
    r"dataloader_persistent_workers|dataloader_prefetch_factor|dataloader_pin_memory|use_cpu|no_cuda|"
    r"per_device_eval_batch_size|eval_accumulation_steps|trackio_.*|project)$")


def run_fingerprint(*arg_objects: Any) -> dict[str, Any]:
    """The arguments that define what a run computes, as JSON values (secrets, output and logging fields excluded).
    ``arg_objects`` are argument dataclasses or plain dicts (a saved ``training_args.json``)."""
    import dataclasses
    import enum

    from .secrets import is_secret_name

    def plain(v):
        if isinstance(v, enum.Enum):
            return v.value
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {str(k): plain(x) for k, x in v.items()}
        return v if isinstance(v, (int, float, str, bool, type(None))) else str(v)

    out: dict[str, Any] = {}
    for obj in arg_objects:
        if obj is None:
            continue
        if isinstance(obj, dict):
            items = list(obj.items())
        else:
            fields = [f.name for f in dataclasses.fields(obj)] if dataclasses.is_dataclass(obj) else list(vars(obj))
            items = [(name, getattr(obj, name, None)) for name in fields]
        for name, value in items:
            if name.startswith("_") or is_secret_name(name) or _UNFINGERPRINTED.match(name):
                continue
            out[name] = plain(value)
    return out


def differing_fields(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """The fields whose values differ between two :func:`run_fingerprint` results."""
    return _differing(a, b)


def _differing(a: dict, b: dict) -> list[str]:
    return sorted(k for k in set(a) | set(b) if a.get(k, "<unset>") != b.get(k, "<unset>"))


class RunDiffersError(ValueError):
    """The output directory belongs to a run with other training arguments."""


def _read_json(path: str) -> Any:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _clear_output_dir(output_dir: str) -> None:
    for name in os.listdir(output_dir):
        if name == LOCK_NAME:
            continue
        path = os.path.join(output_dir, name)
        shutil.rmtree(path) if os.path.isdir(path) and not os.path.islink(path) else os.remove(path)


class RunStatus:
    """What :func:`guard_run` found: ``finished`` (the saved ``metrics`` of the finished run, or None) and
    ``resume_from`` (the newest complete checkpoint, or None)."""

    def __init__(self, output_dir: str, finished: bool, metrics: Any, resume_from: str | None):
        self.output_dir, self.finished, self.metrics, self.resume_from = output_dir, finished, metrics, resume_from

    def __repr__(self) -> str:
        return f"RunStatus(finished={self.finished}, resume_from={self.resume_from!r})"


def guard_run(output_dir: str, *arg_objects: Any, overwrite: bool = False, is_main_process: bool = True,
              quiet: bool = False) -> RunStatus:
    """What every flow calls first (on every process; only the main one touches the disk).

    1. takes the output lock (:func:`acquire_output_lock`, main process only);
    2. removes stale ``.tmp-*`` leftovers of killed atomic writes (safe: the lock is held);
    3. compares the arguments with those recorded by the run that owns ``output_dir``. Different arguments raise
       :class:`RunDiffersError` naming the fields, unless ``overwrite`` (``--overwrite_output_dir true``): then the
       folder is emptied and the run starts afresh;
    4. a finished run (:data:`RUN_MARKER`) with the same arguments: ``finished=True`` and its metrics; the flow
       prints "finished run found in OUTPUT_DIR: nothing to do" (done here unless ``quiet``) and stops;
    5. else records the arguments and returns the checkpoint to resume from, if any.
    """
    fingerprint = run_fingerprint(*arg_objects)
    marker, recorded = os.path.join(output_dir, RUN_MARKER), os.path.join(output_dir, RUN_ARGS)
    if is_main_process:
        acquire_output_lock(output_dir)
        remove_stale_temporaries(output_dir)
        previous = None
        for path in (marker, recorded):
            if os.path.isfile(path):
                previous = _read_json(path).get("arguments")
                break
        if previous is not None and previous != fingerprint:
            if not overwrite:
                fields = _differing(previous, fingerprint)
                raise RunDiffersError(
                    f"{os.path.abspath(output_dir)} holds a run with other arguments ({', '.join(fields[:8])}"
                    f"{', ...' if len(fields) > 8 else ''} differ): pass --overwrite_output_dir true to replace it, "
                    "or choose another output directory")
            _clear_output_dir(output_dir)
        if not os.path.isfile(recorded) or previous != fingerprint:
            atomic_write_json(recorded, {"arguments": fingerprint})
    finished = os.path.isfile(marker)
    if finished:
        if is_main_process and not quiet:
            print(f"hf_vcr: finished run found in {output_dir}: nothing to do", flush=True)
        return RunStatus(output_dir, True, _read_json(marker).get("metrics"), None)
    return RunStatus(output_dir, False, None, find_resumable_checkpoint(output_dir, remove_incomplete=is_main_process))


def mark_run_complete(output_dir: str, *arg_objects: Any, metrics: Any = None) -> str:
    """Write :data:`RUN_MARKER` (arguments + metrics) atomically: the last thing a finished run writes."""
    from .secrets import redact_mapping

    path = os.path.join(output_dir, RUN_MARKER)
    atomic_write_json(path, {"arguments": run_fingerprint(*arg_objects), "metrics": redact_mapping(metrics)})
    return path


def is_run_complete(output_dir: str) -> bool:
    return os.path.isfile(os.path.join(output_dir, RUN_MARKER))
