"""The ``hf-vcr`` console entry.

``hf-vcr evaluate <kind> ...`` and the top-level commands are looked up in the
tables below; each target is ``module:function`` taking the remaining argv, so a
new command is one line here and its code lives beside the thing it evaluates.
Targets are imported only when run: ``hf-vcr evaluate`` never imports torch or transformers.

Bad input (``ValueError``, ``OSError``, ``KeyError``: a loader's or scorer's error, which names the file,
the record and what is wrong) is printed as one line, ``hf-vcr <command>: <message>``, with exit status 2;
any other exception also prints one line, with status 1. ``--debug`` (anywhere before the command's own
arguments, or anywhere for ``evaluate``) shows the traceback instead.
"""

from __future__ import annotations

import importlib
import sys
from typing import Sequence

EVALUATE = {
    "videoqa": "hf_vcr.metrics.videoqa:evaluate_cli",
    "vcr": "hf_vcr.metrics.vcr:evaluate_cli",
    "ranking": "hf_vcr.metrics.sort:ranking_cli",
    "consistency": "hf_vcr.metrics.sort:consistency_cli",
    "zero-shot": "hf_vcr.metrics.zero_shot:main",
}

COMMANDS = {
    "train": "hf_vcr.flows.launcher:train_cli",
    "predict": "hf_vcr.predict:predict_cli",
    "prepare": "hf_vcr.data.synthetic:prepare_cli",
    "filter-corpus": "hf_vcr.data.corpus_filter:filter_corpus_cli",
    "push": "hf_vcr.hub:push_checkpoint_cli",
    "push-dataset": "hf_vcr.hub:push_dataset_cli",
    "probe-shortcuts": "hf_vcr.probes:probe_cli",
}


def _resolve(target: str):
    module, func = target.split(":")
    return getattr(importlib.import_module(module), func)


def _usage() -> str:
    return (
        "usage: hf-vcr [--debug] evaluate {" + ",".join(sorted(EVALUATE)) + "} [options]\n"
        "       hf-vcr [--debug] {" + ",".join(sorted(COMMANDS)) + "} [options]\n"
        "Errors in the input print one line (FILE, line N (id): what is wrong) and exit with status 2;\n"
        "--debug shows the traceback. 'hf-vcr evaluate KIND --help' describes each evaluation.\n"
    )


BAD_INPUT = (ValueError, OSError, KeyError)  # what loaders and scorers raise on bad files (exit status 2)


def one_line(error: BaseException) -> str:
    """An exception as one line: its message (a KeyError's without the quotes), newlines folded."""
    message = error.args[0] if isinstance(error, KeyError) and len(error.args) == 1 else str(error)
    message = " ".join(str(message).split()) or type(error).__name__
    return message if isinstance(error, BAD_INPUT) else f"{type(error).__name__}: {message}"


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = False
    while argv and argv[0] == "--debug":
        debug, argv = True, argv[1:]
    if not argv or argv[0] in ("-h", "--help"):
        sys.stdout.write(_usage())
        return 0
    command, rest = argv[0], argv[1:]
    if command == "evaluate":
        if "--debug" in rest:  # no evaluate command has a --debug of its own
            debug, rest = True, [a for a in rest if a != "--debug"]
        if rest and rest[0] in ("-h", "--help"):
            sys.stdout.write(_usage())
            return 0
        if not rest or rest[0] not in EVALUATE:
            sys.stderr.write(_usage())
            return 2
        name, target, rest = f"hf-vcr evaluate {rest[0]}", EVALUATE[rest[0]], rest[1:]
    elif command in COMMANDS:
        name, target = f"hf-vcr {command}", COMMANDS[command]
    else:
        sys.stderr.write(f"hf-vcr: unknown command {command!r}\n" + _usage())
        return 2
    try:
        result = _resolve(target)(rest)
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as error:  # noqa: BLE001 - the user gets one line, the developer --debug
        if debug:
            raise
        hint = "" if isinstance(error, BAD_INPUT) else " (run with --debug for the traceback)"
        sys.stderr.write(f"{name}: {one_line(error)}{hint}\n")
        return 2 if isinstance(error, BAD_INPUT) else 1
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
