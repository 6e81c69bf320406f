"""ARC stage 2 (cached teacher) under DDP on CPU (gloo): 2 processes x batch 4 vs 1 process x batch 8.

The objective is a per-item mean (KD-A, and KD-R in the paper's form, have no cross-item term) and the
scorers are dropout-free and text-only (no BatchNorm), so after 3 SGD steps the parameters of the
2-process run equal the 1-process run with the doubled batch to 1e-5 (absolute): accelerate shards the
same global batches and DDP averages the gradients. Both ranks end with identical parameters, which moved.
One torchrun (tests/distributed/arc_joint_ddp_worker.py) serves this file and test_joint_ddp.py.
"""

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import arc_joint_ddp_worker  # noqa: E402


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return arc_joint_ddp_worker.launch_once(tmp_path_factory)


def test_arc_stage2_ddp_matches_doubled_batch(runs):
    out, single, init = runs
    arc_joint_ddp_worker.check(out, single["arc"], init["arc"], "arc")
