"""``hf-vcr predict <method>``: prediction files from saved checkpoints, in each benchmark's official format.

One module per method; each has ``make_parser()`` and ``main(argv)``. The table below is the dispatcher,
as ``hf_vcr.cli`` is for the top-level commands.
"""

from __future__ import annotations

import importlib
import sys
from typing import Sequence

METHODS = {
    "vcr": ("hf_vcr.predict.vcr", "VCR leaderboard csv from a saved Q→A and QA→R model"),
    "arc": ("hf_vcr.predict.arc", "VCR leaderboard csv from an ARC run's f_A and f_R"),
    "joint": ("hf_vcr.predict.joint", "VCR leaderboard csv from a joint-coupling run's f_A and f_R"),
    "sort": ("hf_vcr.predict.sort", "SOrT ranking scores and consistency predictions (for hf-vcr evaluate ranking|consistency)"),
    "eigv": ("hf_vcr.predict.eigv", "NExT-QA prediction json from a saved EIGV / VideoQA model"),
}


def _usage() -> str:
    lines = ["usage: hf-vcr predict {" + ",".join(METHODS) + "} [options]", "", "methods:"]
    lines += [f"  {name:<6} {help_}" for name, (_, help_) in METHODS.items()]
    lines.append("\n`hf-vcr predict <method> --help` lists a method's options.")
    return "\n".join(lines) + "\n"


def predict_cli(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        (sys.stdout if argv else sys.stderr).write(_usage())
        return 0 if argv else 2
    method, rest = argv[0], argv[1:]
    if method not in METHODS:
        sys.stderr.write(f"hf-vcr predict: unknown method {method!r}\n" + _usage())
        return 2
    return int(importlib.import_module(METHODS[method][0]).main(rest) or 0)
