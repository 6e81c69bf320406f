"""VcrTrainer under `accelerate launch --multi_gpu --num_processes 2` (gloo on CPU) ends with
the same parameters as one process with the doubled batch, and evaluates every item once."""

from __future__ import annotations

import json

import pytest
from transformers import set_seed

from hf_vcr.models import VcrConfig, VcrForMultipleChoice

from .launch import REPO, launch, load_weights, max_abs_difference

# Same data, same order, same mean loss: only the float summation order differs. SGD, because Adam
# divides by the gradient's magnitude and turns rounding noise in exactly-zero gradients (e.g.
# attention key biases) into full-size steps.
TOLERANCE = 2e-5
# DeepSpeed flattens, buckets and partitions the gradients and clips them in its own engine; after
# 4 steps the weights agree to ~1e-4 (the updates themselves are ~1e-2).
DEEPSPEED_TOLERANCE = 5e-4


@pytest.fixture(scope="module")
def runs(tmp_path_factory, synthetic_vcr):
    root = tmp_path_factory.mktemp("vcr_ddp")
    common = [
        str(REPO / "scripts/configs/vcr_synthetic.yaml"), "--annotations_dir", synthetic_vcr["annotations_dir"],
        "--images_dir", synthetic_vcr["images_dir"], "--tasks", "q2a,qa2r", "--max_steps", "4", "--dropout", "0",
        "--optim", "sgd", "--learning_rate", "0.05", "--warmup_steps", "0", "--save_strategy", "no", "--logging_steps", "1",
        "--disable_tqdm", "true", "--per_device_eval_batch_size", "5",
    ]
    two = launch("scripts/train_vcr.py", common + ["--output_dir", str(root / "two"), "--per_device_train_batch_size", "4"], 2, str(root))
    one = launch("scripts/train_vcr.py", common + ["--output_dir", str(root / "one"), "--per_device_train_batch_size", "8"], 1, str(root))
    return root, one, two


def test_two_processes_match_one_with_doubled_batch(runs):
    root = runs[0]
    for task in ("q2a", "qa2r"):
        diff = max_abs_difference(load_weights(root / "one" / task), load_weights(root / "two" / task))
        assert diff < TOLERANCE, f"{task}: max |Δθ| = {diff}"
        # and training did move them away from the initialisation (the script seeds before building)
        set_seed(0)
        initial = VcrForMultipleChoice(VcrConfig.from_pretrained(root / "one" / task)).state_dict()
        assert max_abs_difference(load_weights(root / "one" / task), {k: initial[k] for k in load_weights(root / "one" / task)}) > 1e-3


def test_evaluation_gathers_each_item_once(runs, synthetic_vcr):
    root = runs[0]
    lines = (root / "two" / "val_predictions.csv").read_text().splitlines()[1:]
    ids = [line.split(",")[0] for line in lines]
    # 48 val items over 2 processes with eval batches of 5: padding must be dropped
    assert len(ids) == len(set(ids)) == 48
    one = json.loads((root / "one" / "metrics.json").read_text())
    two = json.loads((root / "two" / "metrics.json").read_text())
    for key in ("q2a", "qa2r", "q2ar"):
        assert two[key] == pytest.approx(one[key], abs=1e-6)


@pytest.mark.parametrize("stage", [2, 3])
def test_deepspeed_zero_on_cpu_matches_one_process(runs, synthetic_vcr, stage):
    root = runs[0]
    out = root / f"zero{stage}"
    launch("scripts/train_vcr.py", [
        str(REPO / "scripts/configs/vcr_synthetic.yaml"), "--annotations_dir", synthetic_vcr["annotations_dir"],
        "--images_dir", synthetic_vcr["images_dir"], "--tasks", "q2a", "--max_steps", "4", "--dropout", "0",
        "--optim", "sgd", "--learning_rate", "0.05", "--warmup_steps", "0", "--save_strategy", "no",
        "--disable_tqdm", "true", "--per_device_eval_batch_size", "5", "--per_device_train_batch_size", "4",
        "--output_dir", str(out), "--deepspeed", str(REPO / f"scripts/ds_zero{stage}.json"),
    ], 2, str(root))
    diff = max_abs_difference(load_weights(root / "one" / "q2a"), load_weights(out / "q2a"))
    assert diff < DEEPSPEED_TOLERANCE, f"ZeRO-{stage}: max |Δθ| = {diff}"
    # the run also evaluates over both processes and writes a loadable checkpoint
    assert (out / "q2a" / "training_complete").is_file()
    VcrForMultipleChoice.from_pretrained(out / "q2a")
