"""Script configuration: a YAML/JSON file plus command-line overrides, parsed by HfArgumentParser."""

from __future__ import annotations

import json
import os
import re
import sys
from typing import Any, Sequence

import yaml
from transformers import HfArgumentParser

from .distributed import default_to_cpu, repair_deepspeed_cpu_state


def _read_config_file(path: str) -> dict[str, Any]:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"config file not found: {path}")
    with open(path, encoding="utf-8") as f:
        text = f.read()
    try:
        data = json.loads(text) if path.endswith(".json") else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as e:
        raise ValueError(f"{path}: cannot parse config: {e}") from e
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a config must be a mapping of field names to values, got {type(data).__name__}")
    return data


def make_parser(dataclass_types: Sequence[type], prog: str | None = None) -> HfArgumentParser:
    """An ``HfArgumentParser`` over ``dataclass_types`` whose ``--help`` never crashes.

    argparse %-formats every help string, so a literal ``%`` in a field's help (``"50 % of ..."``)
    raised ``TypeError`` on ``--help``; such a ``%`` is escaped here, ``%(default)s`` is kept.
    """
    parser = HfArgumentParser(dataclass_types, prog=prog)
    for action in parser._actions:
        if action.help and "%" in action.help:
            action.help = re.sub(r"%(?!\()", "%%", action.help)
    return parser


def parse_config(dataclass_types: Sequence[type], argv: Sequence[str] | None = None, prog: str | None = None):
    """Parse ``[CONFIG.yaml|json] [--field value ...]`` into instances of ``dataclass_types``.

    Values in the file become parser defaults, so any command-line flag overrides them;
    unknown keys in the file are an error that names the file and the keys.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = make_parser(dataclass_types, prog=prog)
    values: dict[str, Any] = {}
    if argv and not argv[0].startswith("-") and argv[0].endswith((".yaml", ".yml", ".json")):
        path = argv.pop(0)
        values = _read_config_file(path)
        known = {action.dest for action in parser._actions}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"{path}: unknown config keys {unknown}")
        # output_dir etc. may be relative to the working directory, as on the command line.
        parser.set_defaults(**values)
        required = [a for a in parser._actions if a.required and a.dest in values]
        for action in required:
            action.required = False
    if default_to_cpu(deepspeed_requested=bool(values.get("deepspeed")) or "--deepspeed" in argv):
        if any(action.dest == "use_cpu" for action in parser._actions) and "use_cpu" not in values:
            parser.set_defaults(use_cpu=True)
    parsed = parser.parse_args_into_dataclasses(args=argv)
    repair_deepspeed_cpu_state()
    return parsed
