"""The ``hf-vcr`` console entry.

``hf-vcr evaluate <kind> ...`` and the top-level commands are looked up in the
tables below; each target is ``module:function`` taking the remaining argv, so a
new command is one line here and its code lives beside the thing it evaluates.
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
        "usage: hf-vcr evaluate {" + ",".join(sorted(EVALUATE)) + "} [options]\n"
        "       hf-vcr {" + ",".join(sorted(COMMANDS)) + "} [options]\n"
    )


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        sys.stdout.write(_usage())
        return 0
    command, rest = argv[0], argv[1:]
    if command == "evaluate":
        if not rest or rest[0] not in EVALUATE:
            sys.stderr.write(_usage())
            return 2
        target, rest = EVALUATE[rest[0]], rest[1:]
    elif command in COMMANDS:
        target = COMMANDS[command]
    else:
        sys.stderr.write(f"hf-vcr: unknown command {command!r}\n" + _usage())
        return 2
    result = _resolve(target)(rest)
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
