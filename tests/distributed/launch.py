"""Launching a script with 1 or N processes on CPU, and comparing the models they save."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


_GLOO_TEARDOWN_ABORT = "terminate called without an active exception"


def launch(script: str, args: list[str], num_processes: int, cwd: str, timeout: int = 900) -> subprocess.CompletedProcess:
    """``accelerate launch --multi_gpu --num_processes N`` (gloo on CPU) or plain python for N=1.

    ``script`` ``"hf-vcr train <method>"`` goes through the package's launcher instead
    (``hf-vcr train <method> ARGS --num_processes N``), which starts accelerate itself.
    """
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1", TOKENIZERS_PARALLELISM="false")

    def command() -> list[str]:
        if script.startswith("hf-vcr train "):
            launcher = ["--num_processes", str(num_processes), "--main_process_port", str(free_port())] if num_processes > 1 else []
            return [sys.executable, "-m", "hf_vcr.cli", *script.split()[1:], *args, *launcher]
        if num_processes == 1:
            return [sys.executable, str(REPO / script), *args]
        return [
            sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(num_processes),
            "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
            "--main_process_port", str(free_port()), str(REPO / script), *args,
        ]

    cmd = command()
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0 and num_processes > 1 and _GLOO_TEARDOWN_ABORT in result.stderr:
        # gloo's worker threads can abort a finished process at interpreter exit even after destroy_process_group
        # (pytorch/pytorch#179291, #190489); seen once in ~100 CPU launches here. Run it again, once, on a new port.
        cmd = command()
        result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed:\n{result.stdout[-4000:]}\n{result.stderr[-6000:]}")
    return result


def load_weights(model_dir: str | Path) -> dict[str, torch.Tensor]:
    return load_file(str(Path(model_dir) / "model.safetensors"))


def max_abs_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max((a[k].float() - b[k].float()).abs().max().item() for k in a)


# 3 SGD steps without warm-up: Adam divides by the gradient's magnitude and would turn rounding noise in
# exactly-zero gradients (attention key biases, unused heads) into full-size steps.
SGD = ["--optim", "sgd", "--warmup_steps", "0", "--max_steps", "3", "--disable_tqdm", "true"]
# Keys of a results file that measure the run, not the model.
_TIMING = ("runtime", "samples_per_second", "steps_per_second", "eval_file", "output_dir", "loss", "train_loss", "epoch")


def vcr_script_args(root: Path, config: str) -> list[str]:
    """ARC / joint script arguments on a tiny synthetic VCR set: 32 training items, 10 validation items in
    batches of 4 per process (10 is not a multiple of 2 x 4, so a gather that kept the padding would count
    duplicates), dropout 0, SGD."""
    return [
        str(REPO / "scripts" / "configs" / config), "--synthetic_dir", str(root / "vcr_data"), "--synthetic_train", "32",
        "--synthetic_val", "10", "--per_device_eval_batch_size", "4", "--learning_rate", "0.05", "--dropout", "0",
        "--save_strategy", "no", *SGD,
    ]


def assert_same_results(one: dict, two: dict, tolerance: float = 1e-4, where: str = "", skip: tuple[str, ...] = ()) -> None:
    """Evaluation results of a 1-process and an N-process run agree (timings, the training loss and keys
    containing any of ``skip`` aside)."""
    def flat(d, prefix=""):
        for k, v in d.items():
            if isinstance(v, dict):
                yield from flat(v, f"{prefix}{k}.")
            elif isinstance(v, (int, float)) and not isinstance(v, bool) and k not in _TIMING and not any(x in k for x in skip):
                yield f"{prefix}{k}", float(v)

    a, b = dict(flat(one)), dict(flat(two))
    assert a, f"{where}: no metrics to compare"
    assert a.keys() == b.keys(), f"{where}: {sorted(a.keys() ^ b.keys())}"
    bad = {k: (a[k], b[k]) for k in a if abs(a[k] - b[k]) > tolerance * max(1.0, abs(a[k]))}
    assert not bad, f"{where}: 1 process vs N processes differ: {bad}"
