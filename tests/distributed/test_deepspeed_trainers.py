"""DeepSpeed ZeRO on CPU (2 processes, gloo) for the ARC, joint, EIGV, LSKD student and LSKD critic scripts.

Each script runs through ``accelerate launch --multi_gpu --num_processes 2 ... --deepspeed scripts/ds_zero{2,3}.json``
with a tiny synthetic set and 3 steps, must finish and write checkpoints that load with ``from_pretrained``.
Where the method is deterministic given the data (ARC with the cached teacher — stage 1 and stage 2 —, joint
with softmax coupling, the LSKD critic) the 2 x 4 run also equals a 1-process run with the doubled batch
(SGD, no dropout, no warm-up). Tolerance 5e-4 absolute on every weight: DeepSpeed flattens, buckets and
partitions the gradients and clips them in its own engine, so only float summation order differs (the
updates themselves are ~1e-2; tests/distributed/test_vcr_ddp.py uses the same bound). The LSKD student
samples ITM negatives and EIGV draws its views at random per process, so those two are checked for
finishing, finite, moved, whole (ZeRO-3 gathered) weights only. SOrT must refuse DeepSpeed at start.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys

import pytest
import torch

from .conftest import arc_args, critic_args, joint_args
from .launch import REPO, SGD, free_port, launch, load_weights, max_abs_difference

TOLERANCE = 5e-4
S = "scripts"


def _zero(stage: int) -> list[str]:
    return ["--deepspeed", str(REPO / S / f"ds_zero{stage}.json")]


@pytest.fixture(scope="module")
def root(distributed_root):
    return distributed_root


def _assert_finite(weights: dict[str, torch.Tensor]) -> None:
    for name, w in weights.items():
        assert w.numel() > 0, f"{name} saved empty (ZeRO-3 parameters not gathered)"
        assert torch.isfinite(w.float()).all(), name


# ---------------------------------------------------------------------------------------------------- ARC
@pytest.fixture(scope="module")
def arc_runs(root, arc_one):
    args = arc_args(root)
    for stage in (2, 3):
        launch(f"{S}/train_arc.py", args + ["--per_device_train_batch_size", "4", "--output_dir", str(root / f"arc_zero{stage}"), *_zero(stage)],
               2, str(root))
    return root


@pytest.mark.parametrize("stage", [2, 3])
def test_arc_cached_teacher_under_zero_matches_one_process(arc_runs, stage):
    from hf_vcr.models import VcrForMultipleChoice

    out = arc_runs / f"arc_zero{stage}"
    assert (out / "training_complete").is_file()
    for name in ("f_C", "f_A", "f_R"):  # the stage-1 teacher, then the two stage-2 students
        got = load_weights(out / name)
        _assert_finite(got)
        diff = max_abs_difference(load_weights(arc_runs / "arc_one" / name), got)
        assert diff < TOLERANCE, f"ARC ZeRO-{stage} {name}: max |Δθ| = {diff}"
        VcrForMultipleChoice.from_pretrained(out / name)


@pytest.mark.parametrize("stage", [2, 3])
def test_arc_live_teacher_under_zero_matches_cached_one_process(root, arc_one, stage):
    """``--teacher_mode live``: the frozen f_C gets its own DeepSpeed inference engine (TRL's reference-model
    recipe: stage 3 stays partitioned, ZeRO-1/2 drop to stage 0) and runs every step; the live and cached
    teachers give the same loss, so f_A and f_R equal the 1-process cached run."""
    out = root / f"arc_live_zero{stage}"
    launch(f"{S}/train_arc.py", arc_args(root) + ["--teacher_mode", "live", "--per_device_train_batch_size", "4",
                                                  "--output_dir", str(out), *_zero(stage)], 2, str(root))
    assert not (out / "teacher_cache").exists()
    for name in ("f_A", "f_R"):
        got = load_weights(out / name)
        _assert_finite(got)
        diff = max_abs_difference(load_weights(arc_one / name), got)
        assert diff < TOLERANCE, f"ARC live teacher ZeRO-{stage} {name}: max |Δθ| = {diff}"


# -------------------------------------------------------------------------------------------------- joint
def test_joint_softmax_zero2_matches_one_process(root, joint_one):
    from hf_vcr.models import VcrForMultipleChoice

    args = joint_args(root)
    launch(f"{S}/train_joint.py", args + ["--per_device_train_batch_size", "4", "--output_dir", str(root / "joint_zero2"), *_zero(2)], 2, str(root))
    for name in ("f_A", "f_R"):
        got = load_weights(root / "joint_zero2" / name)
        _assert_finite(got)
        diff = max_abs_difference(load_weights(joint_one / name), got)
        assert diff < TOLERANCE, f"joint ZeRO-2 {name}: max |Δθ| = {diff}"
        VcrForMultipleChoice.from_pretrained(root / "joint_zero2" / name)


# --------------------------------------------------------------------------------------------------- EIGV
def test_eigv_zero2_finishes_with_loadable_checkpoint(root):
    from transformers import AutoModel

    import hf_vcr.models  # noqa: F401  (registers the model types)

    out = root / "eigv_zero2"
    launch(f"{S}/train_eigv.py", [
        str(REPO / S / "configs" / "eigv_synthetic.yaml"), "--synthetic_train", "32", "--synthetic_val", "8",
        "--data_dir", str(root / "eigv_data"), "--per_device_train_batch_size", "4", "--erm_warmup_steps", "0", "--output_dir", str(out), *SGD, *_zero(2),
    ], 2, str(root))
    _assert_finite(load_weights(out / "final"))
    model = AutoModel.from_pretrained(out / "final")
    assert sum(p.numel() for p in model.parameters()) > 0


# ------------------------------------------------------------------------------------------- LSKD student
@pytest.fixture(scope="module")
def lskd_runs(root):
    args = [str(REPO / S / "configs" / "lskd_synthetic.yaml"), "--synthetic_images", "32", "--synthetic_mc", "8",
            "--per_device_train_batch_size", "4", "--save_strategy", "no", *SGD]
    for stage in (2, 3):
        launch(f"{S}/train_lskd.py", args + ["--output_dir", str(root / f"lskd_zero{stage}"), *_zero(stage)], 2, str(root))
    return root


@pytest.mark.parametrize("stage", [2, 3])
def test_lskd_student_under_zero_finishes_with_loadable_checkpoint(lskd_runs, stage):
    from hf_vcr.models.modeling_lskd import LskdStudentModel

    final = lskd_runs / f"lskd_zero{stage}" / "final"
    weights = load_weights(final)
    _assert_finite(weights)
    if stage == 3:  # gathered whole: the same names and shapes as the ZeRO-2 checkpoint
        other = load_weights(lskd_runs / "lskd_zero2" / "final")
        assert {k: v.shape for k, v in weights.items()} == {k: v.shape for k, v in other.items()}
    model = LskdStudentModel.from_pretrained(final)
    assert math.isfinite(model.temperature().item())


# ------------------------------------------------------------------------------------------- LSKD critic
def test_lskd_critic_zero2_matches_one_process(root, critic_one):
    from hf_vcr.models.modeling_lskd import LskdCriticModel

    args = critic_args()
    launch(f"{S}/train_critic.py", args + ["--per_device_train_batch_size", "4", "--output_dir", str(root / "critic_zero2"), *_zero(2)],
           2, str(root))
    got = load_weights(root / "critic_zero2" / "final")
    _assert_finite(got)
    diff = max_abs_difference(load_weights(critic_one / "final"), got)
    assert diff < TOLERANCE, f"critic ZeRO-2: max |Δθ| = {diff}"
    LskdCriticModel.from_pretrained(root / "critic_zero2" / "final")


# --------------------------------------------------------------------------------------------------- SOrT
def test_sort_refuses_deepspeed_at_start(root):
    from hf_vcr.trainers.sort_config import DEEPSPEED_REFUSAL

    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(free_port()),
           str(REPO / S / "train_sort.py"), str(REPO / S / "configs" / "sort_synthetic.yaml"), "--synthetic_dir", str(root / "sort_data"),
           "--output_dir", str(root / "sort_zero2"), *_zero(2)]
    proc = subprocess.run(cmd, cwd=str(root), env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert DEEPSPEED_REFUSAL in proc.stdout + proc.stderr
    assert not (root / "sort_zero2" / "final").exists()
