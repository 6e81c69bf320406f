"""Joint Q→AR coupling (softmax weighting, deterministic) under DDP on CPU (gloo): 2 processes x batch 4
equal 1 process x batch 8 after 3 SGD steps to 1e-5 (absolute); both ranks identical; parameters moved.
The run is shared with test_arc_ddp.py (tests/distributed/arc_joint_ddp_worker.py)."""

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import arc_joint_ddp_worker  # noqa: E402


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return arc_joint_ddp_worker.launch_once(tmp_path_factory)


def test_joint_ddp_matches_doubled_batch(runs):
    out, single, init = runs
    arc_joint_ddp_worker.check(out, single["joint"], init["joint"], "joint")
