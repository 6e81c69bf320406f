"""The training flows of the seven methods, one module per method, each shaped alike.

Every ``hf_vcr.flows.<method>`` module has

* ``ARGUMENTS``: the argument dataclasses it parses (model, data, training config), every field with help;
* ``make_parser(prog=None)``: the ``HfArgumentParser`` over them (``--help`` lists every field);
* ``main(argv=None) -> dict``: parse ``CONFIG [--field value ...]`` and run the whole flow (data, model,
  training, evaluation, outputs, card); the last line it prints is a JSON object of the metrics.

``python -m hf_vcr.flows.<method>``, ``scripts/train_<method>.py`` and ``hf-vcr train <method>`` all call the
same ``main``. Shipped configs (``hf_vcr/configs/*.yaml``), accelerate files and DeepSpeed files are package
data, addressable by name (``vcr_synthetic``, ``zero3``, ``multi_gpu``) or by path.
"""

from __future__ import annotations

import importlib
import os
from importlib import resources
from typing import Callable, Sequence

METHODS = {
    "vcr": "VCR baseline: Q→A and QA→R multiple-choice models, Q→AR evaluation",
    "arc": "ARC: QR→A teacher, then Q→A and QA→R with KD-A and KD-R",
    "joint": "joint coupling: the predicted answer fed into rationale prediction",
    "sort": "SOrT: Grad-CAM contrastive gradient loss on VQA-Introspect",
    "eigv": "EIGV: equivariant and invariant grounding for VideoQA",
    "lskd": "LSKD: the BLIP-2 Q-Former student distilled from the localized corpus",
    "critic": "LSKD critic: scores (image, question, answer, rationale) for corpus filtering",
}


def flow_module(method: str):
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")
    return importlib.import_module(f"hf_vcr.flows.{method}")


def shipped_dir(kind: str = "") -> str:
    """The folder of the shipped configs (``kind`` ``""``), accelerate files (``"accelerate"``) or DeepSpeed files."""
    return str(resources.files("hf_vcr").joinpath("configs", kind) if kind else resources.files("hf_vcr").joinpath("configs"))


def shipped_names(kind: str = "") -> list[str]:
    folder = shipped_dir(kind)
    return sorted(os.path.splitext(f)[0] for f in os.listdir(folder) if f.endswith((".yaml", ".json")))


def resolve_shipped(value: str, kind: str = "") -> str:
    """A path as given when it exists, else the shipped file named ``value`` (with or without extension)."""
    if os.path.exists(value):
        return value
    folder = shipped_dir(kind)
    for ext in ("", ".yaml", ".yml", ".json"):
        candidate = os.path.join(folder, value + ext)
        if os.path.basename(value) == value and os.path.isfile(candidate):
            return candidate
    what = {"": "config", "accelerate": "accelerate config", "deepspeed": "DeepSpeed config"}[kind]
    raise FileNotFoundError(f"{what} {value!r} is neither a file nor a shipped name ({', '.join(shipped_names(kind))})")


def resolve_argv(argv: Sequence[str]) -> list[str]:
    """Replace a leading config name and a ``--deepspeed NAME`` by the shipped files' paths."""
    argv = list(argv)
    if argv and not argv[0].startswith("-"):
        argv[0] = resolve_shipped(argv[0])
    for i, token in enumerate(argv):
        if token == "--deepspeed" and i + 1 < len(argv):
            argv[i + 1] = resolve_shipped(argv[i + 1], "deepspeed")
        elif token.startswith("--deepspeed="):
            argv[i] = "--deepspeed=" + resolve_shipped(token.split("=", 1)[1], "deepspeed")
    return argv


def parse_flow_args(arguments: Sequence[type], argv: Sequence[str] | None = None, prog: str | None = None):
    """Parse ``CONFIG [--field value ...]`` (CONFIG a path or a shipped name) into ``arguments``' instances."""
    import sys

    from ..utils.config_parsing import parse_config

    argv = list(sys.argv[1:] if argv is None else argv)
    return parse_config(arguments, resolve_argv(argv), prog=prog)


def load_recipe(method: str, name_or_path: str, argv: Sequence[str] = ()):
    """The argument dataclasses of ``method`` parsed from a recipe (a shipped name such as ``arc_paper``, or a path)."""
    return parse_flow_args(flow_module(method).ARGUMENTS, [name_or_path, *argv])


def run_script(main: Callable[..., object]) -> None:
    """Run a flow's ``main`` as a program (``python -m`` / scripts / accelerate launch) and close the process group."""
    from ..utils.distributed import end_distributed

    main()
    end_distributed()
