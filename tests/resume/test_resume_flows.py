"""Every training flow, with its shipped config at tiny sizes, killed with SIGKILL at several points and restarted with
the same command, ends bit-identical to an uninterrupted run: weights, metrics, predictions, cards.

Kill points (``HF_VCR_TEST_KILL_AT``, see :func:`hf_vcr.utils.checkpoints.kill_point_for_tests`): ``step:N`` inside
optimizer step N, ``before_mark:N`` between writing checkpoint-N and marking it complete (with ``save_total_limit 1``:
the previous checkpoint must survive), ``after_save:N`` after checkpoint-N (at ``max_steps``: the final checkpoint; for
ARC stage 1: the early-stop checkpoint, the stage boundary). One chain of kills per flow: each restart resumes from what
the previous kill left. Reference and resumed runs use the same relative ``--output_dir`` in different working folders,
so even the command line in the cards is the same.
"""

from __future__ import annotations

import json
import re

import pytest

from .harness import (
    assert_same_results,
    finish_flow,
    flow_args,
    in_background,
    run_flow,
    start_flow,
)

# Every flow is killed inside a step, between writing a checkpoint and marking it (save_total_limit 1: the previous
# one must survive) and after its final checkpoint (the restart trains nothing more), one kill after the other.
KILLS = {
    "vcr": ["step:3", "before_mark:4", "after_save:6"],  # in Q→A's trainer; then Q→A is reused and QA→R trains
    # stage 1 (eval/save every 2 steps, early stop at 6): mid-patience (the counter must come back), then the
    # early-stop checkpoint (the stage boundary: no more teacher training), then inside stage 2's third step
    "arc": ["step:5", "after_save:6", "step:3"],
    "joint": ["step:3", "before_mark:4", "after_save:6"],
    "sort": ["step:3", "before_mark:4", "after_save:6"],
    "eigv": ["before_mark:4", "step:5", "after_save:6"],  # step 5: after the memory bank filled (EIGV from step 2)
    "lskd": ["step:3", "before_mark:4", "after_save:6"],  # augmented regions: the collator's generator
    "critic": ["step:3", "before_mark:4", "after_save:6"],
}
VCR_METHODS = ("vcr", "arc", "joint")


def _refuse_constant(name):
    raise ValueError(f"not strict JSON: {name}")


def strict_json(text: str):
    return json.loads(text, parse_constant=_refuse_constant)
RESUMED = re.compile(r"hf_vcr: (resuming from \S*checkpoint-\d+|\S*checkpoint-\d+ ended training)")


@pytest.mark.parametrize("method", list(KILLS))
def test_killed_runs_resume_bit_identical(method, tmp_path, request):
    corpus = request.getfixturevalue("synthetic_vcr") if method in VCR_METHODS else None
    reference, resumed = tmp_path / "reference", tmp_path / "resumed"
    reference.mkdir(), resumed.mkdir()
    args = flow_args(method, "out", corpus)
    with in_background(start_flow(method, args, cwd=reference)) as uninterrupted:
        restarts = [run_flow(method, args, kill_at=point, cwd=resumed) for point in KILLS[method]][1:]
        restarts.append(run_flow(method, args, cwd=resumed))
        whole = finish_flow(uninterrupted)
    # every JSON file the run wrote and its last stdout line are strict JSON (null, never NaN / Infinity)
    for line in (whole.stdout, restarts[-1].stdout):
        assert isinstance(strict_json(line.strip().splitlines()[-1]), dict), line[-500:]
    for path in (reference / "out").rglob("*.json"):
        strict_json(path.read_text(encoding="utf-8"))
    for restart in restarts:
        # it went on from a checkpoint (with save_total_limit 1 and a kill before the mark: the previous one), it did
        # not start over (which, deterministic, would end identical too)
        assert RESUMED.search(restart.stdout), restart.stdout[-2000:]
    assert_same_results(reference / "out", resumed / "out")
