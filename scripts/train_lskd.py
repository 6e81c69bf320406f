#!/usr/bin/env python
"""Train the LSKD Q-Former student: a thin entry point over :mod:`hf_vcr.flows.lskd` (same as ``hf-vcr train lskd``).

    python scripts/train_lskd.py lskd_synthetic [--field value ...]      # a shipped config by name, or a path
    accelerate launch --multi_gpu --num_processes 2 scripts/train_lskd.py scripts/configs/lskd_synthetic.yaml
"""

from hf_vcr.flows import run_script
from hf_vcr.flows.lskd import main

if __name__ == "__main__":
    run_script(main)
