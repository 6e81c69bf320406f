#!/usr/bin/env python
"""Train ARC (Algorithm 1: QR→A teacher, KD-A, KD-R): a thin entry point over :mod:`hf_vcr.flows.arc` (same as ``hf-vcr train arc``).

    python scripts/train_arc.py arc_synthetic [--field value ...]      # a shipped config by name, or a path
    accelerate launch --multi_gpu --num_processes 2 scripts/train_arc.py scripts/configs/arc_synthetic.yaml
"""

from hf_vcr.flows import run_script
from hf_vcr.flows.arc import main

if __name__ == "__main__":
    run_script(main)
