#!/usr/bin/env python
"""Train joint answer–rationale coupling: a thin entry point over :mod:`hf_vcr.flows.joint` (same as ``hf-vcr train joint``).

    python scripts/train_joint.py joint_synthetic [--field value ...]      # a shipped config by name, or a path
    accelerate launch --multi_gpu --num_processes 2 scripts/train_joint.py scripts/configs/joint_synthetic.yaml
"""

from hf_vcr.flows import run_script
from hf_vcr.flows.joint import main

if __name__ == "__main__":
    run_script(main)
