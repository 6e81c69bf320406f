"""EigvTrainer under DDP on CPU (gloo), 2 processes x batch 4 vs 1 process x batch 8, at the trainer level
(the script under accelerate launch: test_multi_gpu_scripts.py; under DeepSpeed: test_deepspeed_trainers.py).

* ERM objective (deterministic): the parameters after 3 SGD steps (AdamW would turn float noise in near-zero gradients into full-size steps) equal the 1-process run with the doubled
  batch to 1e-5 (absolute), since accelerate shards the same global batches and DDP averages the gradients.
* EIGV objective: its random draws (Gumbel noise, mixing ratios, partners, memory-bank clips, negatives) are
  per process, so it cannot equal a 1-process run; the check is that the multi-view step, which runs inside the
  wrapped forward (``compute_fn``), is synchronised: both ranks end with identical parameters that moved.
"""

import os
import subprocess
import sys

import torch

from hf_vcr.data.synthetic_videoqa import make_synthetic_videoqa

HERE = os.path.dirname(os.path.abspath(__file__))


def test_eigv_ddp_two_processes_match(tmp_path):
    from . import eigv_ddp_worker

    data = str(tmp_path / "data")
    make_synthetic_videoqa(data, seed=3, num_train=24, num_val=4, num_clips=8, span=2, feature_dim=16)
    out = str(tmp_path / "out")
    env = dict(os.environ, OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         os.path.join(HERE, "eigv_ddp_worker.py"), data, out, "4", "erm", "eigv"],
        capture_output=True, text=True, env=env, timeout=400,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    single = torch.load(eigv_ddp_worker.run(data, out, 8, "erm"))
    erm0 = torch.load(os.path.join(out, "erm_world2_rank0.pt"))
    erm1 = torch.load(os.path.join(out, "erm_world2_rank1.pt"))
    for name, value in single.items():
        assert torch.allclose(erm0[name], value, atol=1e-5), name
        assert torch.equal(erm0[name], erm1[name]), name
    e0 = torch.load(os.path.join(out, "eigv_world2_rank0.pt"))
    e1 = torch.load(os.path.join(out, "eigv_world2_rank1.pt"))
    moved = 0
    for name in e0:
        assert torch.allclose(e0[name], e1[name], atol=1e-6), name
        moved += int(not torch.allclose(e0[name], single[name]))
    assert moved > 0
    assert not torch.allclose(e0["videoqa.grounding.fc1.weight"], single["videoqa.grounding.fc1.weight"])
