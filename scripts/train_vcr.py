#!/usr/bin/env python
"""Train VCR multiple-choice baseline (Q→A, QA→R, Q→AR): a thin entry point over :mod:`hf_vcr.flows.vcr` (same as ``hf-vcr train vcr``).

    python scripts/train_vcr.py vcr_synthetic [--field value ...]      # a shipped config by name, or a path
    accelerate launch --multi_gpu --num_processes 2 scripts/train_vcr.py scripts/configs/vcr_synthetic.yaml
"""

from hf_vcr.flows import run_script
from hf_vcr.flows.vcr import main

if __name__ == "__main__":
    run_script(main)
