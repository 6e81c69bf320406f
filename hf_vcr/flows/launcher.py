"""``hf-vcr train <method> CONFIG [--field value ...]``: one flow, in this process or under ``accelerate launch``.

As ``trl sft --config`` does, the arguments are parsed here first with the flow's own parser, so ``--help``
works and a bad field fails before any process starts. With one process (the default) the flow runs in
this process; ``--num_processes N`` (N > 1), ``--num_machines``, ``--accelerate_config`` start
``accelerate launch ... -m hf_vcr.flows.<method> CONFIG ...`` instead. The launcher takes its options
explicitly rather than forwarding unknown ones to accelerate, so a typo is a clear error here.
"""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Sequence

from . import METHODS, flow_module, parse_flow_args, resolve_argv, resolve_shipped, shipped_names

# launcher option -> (accelerate launch flag, help)
LAUNCH_OPTIONS = {
    "--num_processes": ("--num_processes", "processes in all (default 1: run in this process); GPUs, or CPU processes over gloo"),
    "--accelerate_config": ("--config_file", "an accelerate config file, or a shipped one by name (multi_gpu, multi_node)"),
    "--num_machines": ("--num_machines", "machines (nodes) in the run"),
    "--machine_rank": ("--machine_rank", "this machine's rank among --num_machines"),
    "--main_process_ip": ("--main_process_ip", "address of the rank-0 machine"),
    "--main_process_port": ("--main_process_port", "port of the rank-0 process"),
}


def _usage() -> str:
    width = max(map(len, METHODS))
    lines = ["usage: hf-vcr train <method> CONFIG [--field value ...] [launcher options]", "", "methods:"]
    lines += [f"  {name:<{width}}  {summary}" for name, summary in METHODS.items()]
    lines += ["", "CONFIG: a yaml/json file, or a shipped config by name: " + ", ".join(shipped_names()), "",
              "launcher options (the flow's own fields: hf-vcr train <method> --help):"]
    lines += [f"  {flag} VALUE  {text}" for flag, (_, text) in LAUNCH_OPTIONS.items()]
    lines += ["  --deepspeed NAME|PATH  a DeepSpeed config (shipped: " + ", ".join(shipped_names("deepspeed")) + ")"]
    return "\n".join(lines) + "\n"


def split_launch_options(argv: Sequence[str]) -> tuple[dict[str, str], list[str]]:
    """Separate the launcher's options from the flow's ``CONFIG [--field value ...]``."""
    launch, rest, i = {}, [], 0
    argv = list(argv)
    while i < len(argv):
        token = argv[i]
        name, eq, value = token.partition("=")
        if name in LAUNCH_OPTIONS:
            if not eq:
                if i + 1 >= len(argv):
                    raise SystemExit(f"hf-vcr train: {name} needs a value")
                value, i = argv[i + 1], i + 1
            launch[name] = value
        else:
            rest.append(token)
        i += 1
    return launch, rest


def accelerate_command(method: str, launch: dict[str, str], flow_argv: Sequence[str]) -> list[str]:
    """The ``accelerate launch`` command line that runs ``hf_vcr.flows.<method>`` with ``flow_argv``."""
    cmd = [sys.executable, "-m", "accelerate.commands.launch"]
    if "--accelerate_config" in launch:
        cmd += ["--config_file", resolve_shipped(launch["--accelerate_config"], "accelerate")]
    elif int(launch.get("--num_processes", "1")) > 1 or int(launch.get("--num_machines", "1")) > 1:
        cmd += ["--multi_gpu"]  # on a machine without GPUs: N CPU processes over gloo (see utils.distributed)
    for option, value in launch.items():
        if option != "--accelerate_config":
            cmd += [LAUNCH_OPTIONS[option][0], value]
    return cmd + ["-m", f"hf_vcr.flows.{method}", *flow_argv]


def train_cli(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        sys.stdout.write(_usage())
        return 0
    method, rest = argv[0], argv[1:]
    if method not in METHODS:
        sys.stderr.write(f"hf-vcr train: unknown method {method!r}\n" + _usage())
        return 2
    module = flow_module(method)
    launch, flow_argv = split_launch_options(rest)
    if not flow_argv or flow_argv[0] in ("-h", "--help"):
        parser = module.make_parser()
        parser.epilog = "CONFIG: a yaml/json file or a shipped name (" + ", ".join(
            n for n in shipped_names() if n.startswith(method + "_")) + "). Launcher options: hf-vcr train --help."
        parser.usage = f"hf-vcr train {method} CONFIG [--field value ...] [--num_processes N] [--deepspeed NAME|PATH]"
        parser.print_help()
        return 0
    flow_argv = resolve_argv(flow_argv)
    if not launch or launch == {"--num_processes": "1"}:
        module.main(flow_argv)
        from ..utils.distributed import end_distributed

        end_distributed()
        return 0
    parse_flow_args(module.ARGUMENTS, flow_argv, prog=module.PROG)  # a bad field or config fails before any process starts
    return subprocess.call(accelerate_command(method, launch, flow_argv), env=dict(os.environ))
