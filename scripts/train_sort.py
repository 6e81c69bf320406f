#!/usr/bin/env python
"""Train SOrT (sub-question oriented tuning): a thin entry point over :mod:`hf_vcr.flows.sort` (same as ``hf-vcr train sort``).

    python scripts/train_sort.py sort_synthetic [--field value ...]      # a shipped config by name, or a path
    accelerate launch --multi_gpu --num_processes 2 scripts/train_sort.py scripts/configs/sort_synthetic.yaml
"""

from hf_vcr.flows import run_script
from hf_vcr.flows.sort import main

if __name__ == "__main__":
    run_script(main)
