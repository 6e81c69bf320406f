"""Every trainer's script under ``accelerate launch --multi_gpu --num_processes 2`` (gloo on CPU).

Each 2-process run with per-device batch ``b`` must end with the same parameters as the script run in one
process with batch ``2b``: accelerate shards the same global batches, DDP averages the per-process mean
gradients, and every objective compared here is a per-item mean (SGD, dropout 0, no warm-up). Tolerance
``TOLERANCE`` absolute on every weight: only the float summation order differs, while the updates themselves
are ~1e-2. Evaluation runs on both processes and gathers the predictions: the results files must equal the
1-process run's (10 validation items in batches of 4 per process, so a gather that kept the padded
duplicates would change them).

Where a method draws at random per process the draws differ from a 1-process run by design, so:
* EIGV is compared with its ``erm`` objective (same backbone, same script); with the ``eigv`` objective
  (partners, mixing ratios, Gumbel noise, memory-bank views are drawn per process) the 2-process run must
  finish, evaluate and have trained the grounding indicator, which ERM never touches.
* the LSKD student is compared with ITC + ITG (ITC's negatives are gathered across processes, with gradient)
  and without region re-assignment; ITM samples hard negatives at random (``itm_weight 0`` here).
(VCR's own script: tests/distributed/test_vcr_ddp.py.)
"""

from __future__ import annotations

import json

import pytest

from .conftest import arc_args, critic_args, joint_args, one_process_run
from .launch import REPO, SGD, assert_same_results, launch, load_weights, max_abs_difference

TOLERANCE = 2e-5
S = "scripts"
TWO = ["--per_device_train_batch_size", "4"]


def _read(path):
    return json.loads(path.read_text())


def _one_and_two(root, script: str, args: list[str], name: str):
    """The script with 1 process x batch 8 and with 2 processes x batch 4: the two output directories."""
    one = one_process_run(root, script, args, f"{name}_one")
    two = root / f"{name}_ddp"
    launch(script if script.startswith("hf-vcr ") else f"{S}/{script}", args + TWO + ["--output_dir", str(two)], 2, str(root))
    return one, two


def _assert_equal_weights(one_dir, two_dir, where):
    one, two = load_weights(one_dir), load_weights(two_dir)
    diff = max_abs_difference(one, two)
    assert diff < TOLERANCE, f"{where}: max |Δθ| = {diff}"
    return one, two


def test_arc_two_processes_match_one(distributed_root, arc_one):
    out = distributed_root / "arc_ddp"
    launch(f"{S}/train_arc.py", arc_args(distributed_root) + TWO + ["--output_dir", str(out)], 2, str(distributed_root))
    for name in ("f_C", "f_A", "f_R"):  # the stage-1 teacher, then the stage-2 students trained against its cache
        _assert_equal_weights(arc_one / name, out / name, f"ARC {name}")
    assert_same_results(_read(arc_one / "metrics.json"), _read(out / "metrics.json"), where="ARC metrics")
    # the teacher cache is gathered from both processes: every training item once
    ids = _read(out / "teacher_cache" / "annot_ids.json")
    assert len(ids) == len(set(ids)) == len(_read(arc_one / "teacher_cache" / "annot_ids.json")) == 32


def test_joint_two_processes_match_one(distributed_root, joint_one):
    out = distributed_root / "joint_ddp"
    launch(f"{S}/train_joint.py", joint_args(distributed_root) + TWO + ["--output_dir", str(out)], 2, str(distributed_root))
    for name in ("f_A", "f_R"):
        _assert_equal_weights(joint_one / name, out / name, f"joint {name}")
    assert_same_results(_read(joint_one / "metrics.json"), _read(out / "metrics.json"), where="joint metrics")


def test_sort_two_processes_match_one(distributed_root):
    # every synthetic item has 1 reasoning, 2 sub- and 3 irrelevant questions, so per-role means over each
    # process's half of the batch average to the full-batch means
    args = [
        str(REPO / S / "configs" / "sort_synthetic.yaml"), "--synthetic_dir", str(distributed_root / "sort_data"),
        "--synthetic_train_items", "64", "--synthetic_eval_items", "10", "--per_device_eval_batch_size", "4",
        "--learning_rate", "0.05", "--hidden_size", "32", "--question_hidden_size", "32", "--attention_hidden_size", "32",
        "--classifier_hidden_size", "64", "--logging_steps", "1", *SGD,
    ]
    one, two = _one_and_two(distributed_root, "train_sort.py", args, "sort")
    _assert_equal_weights(one / "final", two / "final", "SOrT")
    assert_same_results(_read(one / "sort_results.json"), _read(two / "sort_results.json"), where="SOrT results")


@pytest.fixture(scope="module")
def eigv_args(distributed_root):
    return [
        str(REPO / S / "configs" / "eigv_synthetic.yaml"), "--data_dir", str(distributed_root / "eigv_ddp_data"),
        "--synthetic_train", "32", "--synthetic_val", "10", "--per_device_eval_batch_size", "4", "--learning_rate", "0.05", "--erm_warmup_steps", "0",
        "--logging_steps", "1", "--text_config", '{"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}', *SGD,
    ]


def test_eigv_script_erm_two_processes_match_one(distributed_root, eigv_args):
    # through the package's launcher: hf-vcr train eigv CONFIG ... --num_processes 2
    one, two = _one_and_two(distributed_root, "hf-vcr train eigv", eigv_args + ["--objective", "erm"], "eigv_erm")
    _assert_equal_weights(one / "final", two / "final", "EIGV (erm objective)")
    assert_same_results(_read(one / "metrics.json"), _read(two / "metrics.json"), where="EIGV metrics")
    predictions = _read(two / "predictions.json")
    assert len(predictions) == 10  # every validation question once, in the official format


def test_eigv_script_eigv_objective_two_processes(distributed_root, eigv_args):
    erm = distributed_root / "eigv_erm_ddp"
    if not (erm / "final").is_dir():  # run alone
        launch(f"{S}/train_eigv.py", eigv_args + TWO + ["--objective", "erm", "--output_dir", str(erm)], 2, str(distributed_root))
    out = distributed_root / "eigv_ddp"
    # Adam: eq. 8's logits are attention probabilities, so the indicator's gradients are small for SGD
    launch(f"{S}/train_eigv.py", eigv_args + TWO + ["--objective", "eigv", "--optim", "adamw_torch", "--output_dir", str(out)], 2,
           str(distributed_root))
    eigv, base = load_weights(out / "final"), load_weights(erm / "final")
    # same initialisation (seeded); ERM never updates the grounding indicator, EIGV trains it through eq. 8
    assert max_abs_difference({k: base[k] for k in base if ".grounding." in k}, {k: eigv[k] for k in eigv if ".grounding." in k}) > 1e-4
    assert len(_read(out / "predictions.json")) == 10
    assert len(_read(out / "causal_masks.json")) == 10


@pytest.mark.parametrize("objective", ["stage1", "generative"])
def test_lskd_student_two_processes_match_one(distributed_root, objective):
    # ITC/ITG (stage 1) and the frozen-LM loss (generative) are token or item means over the whole batch: the
    # trainer divides token sums by the batch's token count over all processes. drop_last: the filtered corpus
    # is not a multiple of the global batch, and at an epoch's end accelerate pads the last per-process
    # batches with items from the start, which one process does not see
    args = [
        str(REPO / S / "configs" / "lskd_synthetic.yaml"), "--objective", objective, "--synthetic_images", "32", "--synthetic_mc", "8",
        "--itm_weight", "0", "--augment_regions", "false", "--learning_rate", "0.05", "--weight_decay", "0",
        "--save_strategy", "no", "--dataloader_drop_last", "true", *SGD,
    ]
    one, two = _one_and_two(distributed_root, "train_lskd.py", args, f"lskd_{objective}")
    _assert_equal_weights(one / "final", two / "final", f"LSKD student ({objective})")
    assert_same_results(_read(one / "lskd_results.json"), _read(two / "lskd_results.json"), where=f"LSKD results ({objective})")


def test_lskd_critic_two_processes_match_one(distributed_root, critic_one):
    out = distributed_root / "critic_ddp"
    launch(f"{S}/train_critic.py", critic_args() + TWO + ["--output_dir", str(out)], 2, str(distributed_root))
    _assert_equal_weights(critic_one / "final", out / "final", "critic")
    # the losses of an evaluation are per-batch means averaged over batches (the Trainer's eval_loss too), which the
    # padded last batch of a process tilts; the metrics from the gathered predictions must agree exactly
    assert_same_results(_read(critic_one / "critic_results.json"), _read(out / "critic_results.json"), where="critic results",
                        skip=("loss", "_ce", "_mse"))
