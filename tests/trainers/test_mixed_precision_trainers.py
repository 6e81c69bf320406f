"""``--bf16 true`` and ``--fp16 true`` on CPU (torch autocast; fp16 with accelerate's gradient scaler) through
every training script: 3 steps on tiny synthetic data, finite logged losses, and the saved (master) weights
are still float32 and finite. TF32 is a CUDA matmul mode (transformers refuses ``--tf32`` without an Ampere
or newer GPU), so it is not tested here."""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "scripts" / "configs"
COMMON = ["--max_steps", "3", "--logging_steps", "1", "--warmup_steps", "0", "--disable_tqdm", "true"]


def _cases(tmp: Path) -> dict[str, tuple[list[str], list[str]]]:
    """method -> (script argv, checkpoint directories relative to the output dir)."""
    vcr = ["--synthetic_dir", str(tmp / "vcr_data"), "--synthetic_train", "32", "--synthetic_val", "8",
           "--per_device_train_batch_size", "8", "--per_device_eval_batch_size", "8", "--save_strategy", "no"]
    return {
        "vcr": (["train_vcr.py", str(CONFIGS / "vcr_synthetic.yaml"), "--tasks", "q2a", *vcr], ["q2a"]),
        "arc": (["train_arc.py", str(CONFIGS / "arc_synthetic.yaml"), "--teacher_max_steps", "2", *vcr], ["f_C", "f_A", "f_R"]),
        "joint": (["train_joint.py", str(CONFIGS / "joint_synthetic.yaml"), *vcr], ["f_A", "f_R"]),
        "sort": (["train_sort.py", str(CONFIGS / "sort_synthetic.yaml"), "--synthetic_train_items", "32", "--synthetic_eval_items", "8",
                  "--per_device_train_batch_size", "8"], ["final"]),
        "eigv": (["train_eigv.py", str(CONFIGS / "eigv_synthetic.yaml"), "--synthetic_train", "32", "--synthetic_val", "8",
                  "--data_dir", str(tmp / "eigv_data"), "--per_device_train_batch_size", "8", "--erm_warmup_steps", "0"], ["final"]),
        "lskd": (["train_lskd.py", str(CONFIGS / "lskd_synthetic.yaml"), "--synthetic_images", "32", "--synthetic_mc", "8",
                  "--per_device_train_batch_size", "8", "--save_strategy", "no"], ["final"]),
        "critic": (["train_critic.py", str(CONFIGS / "critic_synthetic.yaml"), "--synthetic_items", "32",
                    "--per_device_train_batch_size", "8", "--save_strategy", "no"], ["final"]),
    }


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
@pytest.mark.parametrize("method", ["vcr", "arc", "joint", "sort", "eigv", "lskd", "critic"])
def test_mixed_precision_trains_with_fp32_master_weights(method, precision, tmp_path):
    argv, checkpoints = _cases(tmp_path)[method]
    out = tmp_path / "out"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1", TOKENIZERS_PARALLELISM="false", CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / argv[0]), *argv[1:], *COMMON, f"--{precision}", "true", "--output_dir", str(out)],
                          cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    # Trainer logs {'loss': '1.386', ...} once per step (stage 1 and stage 2 for ARC)
    losses = [float(v) for v in re.findall(r"'loss': '?([^',}]+)'?", proc.stdout + proc.stderr)]
    assert len(losses) >= 3, proc.stdout[-3000:]
    assert all(math.isfinite(l) for l in losses), losses
    for name in checkpoints:
        weights = load_file(str(out / name / "model.safetensors"))
        floats = {k: v for k, v in weights.items() if v.is_floating_point()}
        assert floats and all(v.dtype == torch.float32 for v in floats.values()), {k: v.dtype for k, v in floats.items() if v.dtype != torch.float32}
        assert all(torch.isfinite(v).all() for v in floats.values()), name
