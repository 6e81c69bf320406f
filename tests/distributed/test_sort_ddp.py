"""SOrT under DDP: 2 processes (torchrun, gloo on CPU) x batch 4 end with the same parameters as
1 process x batch 8 for the same steps and seed.

Every synthetic item has 1 reasoning, 2 sub- and 3 irrelevant questions, so each process's
per-role means and per-item contrastive mean are means over equal halves of the full batch and
DDP's gradient average equals the full-batch gradient. Tolerance: atol 2e-5 on every parameter
(float32 sums in a different order, through 4 Adam steps).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

REPO = Path(__file__).resolve().parents[2]
CONFIG = str(REPO / "scripts" / "configs" / "sort_synthetic.yaml")
ARGS = [
    "--synthetic_train_items", "64", "--synthetic_eval_items", "8", "--max_steps", "4", "--learning_rate", "1e-3",
    "--hidden_size", "32", "--question_hidden_size", "32", "--attention_hidden_size", "32", "--classifier_hidden_size", "64",
    "--disable_tqdm", "true", "--logging_steps", "2", "--seed", "0",
]


def _run(cmd, tmp_path, name):
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_DATASETS_CACHE=str(tmp_path / f"cache_{name}"), TOKENIZERS_PARALLELISM="false")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=str(REPO), timeout=400)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return load_file(str(tmp_path / name / "final" / "model.safetensors"))


def test_two_process_ddp_matches_one_process_doubled_batch(tmp_path):
    script = str(REPO / "scripts" / "train_sort.py")
    data = ["--synthetic_dir", str(tmp_path / "data")]
    single = _run(
        [sys.executable, script, CONFIG, *ARGS, *data, "--per_device_train_batch_size", "8", "--output_dir", str(tmp_path / "one")],
        tmp_path, "one",
    )
    ddp = _run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", script, CONFIG, *ARGS, *data,
         "--per_device_train_batch_size", "4", "--output_dir", str(tmp_path / "two")],
        tmp_path, "two",
    )
    assert single.keys() == ddp.keys()
    diffs = {name: float((ddp[name] - single[name]).abs().max()) for name in single}
    bad = {k: v for k, v in diffs.items() if v > 2e-5}
    assert not bad, f"parameters differ beyond 2e-5: {bad}"
