"""Exact resume under 2 processes (``accelerate launch --multi_gpu --num_processes 2``, gloo on CPU): every process
saves and restores its own generators and buffers (EIGV's memory bank is per process), and only the launch's main
process takes the output lock (the other rank of the same launch must not refuse its own run)."""

from __future__ import annotations

import pytest

from .harness import (
    assert_same_results,
    finish_flow,
    flow_args,
    in_background,
    run_flow,
    start_flow,
)
from .test_resume_flows import RESUMED

KILLS = {"vcr": "step:3", "eigv": "before_mark:4"}


@pytest.mark.parametrize("method", list(KILLS))
def test_killed_two_process_runs_resume_bit_identical(method, tmp_path, request):
    corpus = request.getfixturevalue("synthetic_vcr") if method == "vcr" else None
    reference, resumed = tmp_path / "reference", tmp_path / "resumed"
    reference.mkdir(), resumed.mkdir()
    args = flow_args(method, "out", corpus)
    with in_background(start_flow(method, args, num_processes=2, cwd=reference)) as uninterrupted:
        run_flow(method, args, kill_at=KILLS[method], num_processes=2, cwd=resumed)
        checkpoint = resumed / "out" / ("q2a" if method == "vcr" else "") / "checkpoint-2"
        assert (checkpoint / "rng_state_1.pth").is_file()  # the kill came after the 2-process checkpoint
        if method == "eigv":
            assert (checkpoint / "hf_vcr_state" / "rank1.safetensors").is_file()  # rank 1's own memory bank
        restart = run_flow(method, args, num_processes=2, cwd=resumed)
        assert RESUMED.search(restart.stdout), restart.stdout[-2000:]
        finish_flow(uninterrupted)
    assert_same_results(reference / "out", resumed / "out")
