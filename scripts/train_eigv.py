#!/usr/bin/env python
"""Train EIGV VideoQA grounding: a thin entry point over :mod:`hf_vcr.flows.eigv` (same as ``hf-vcr train eigv``).

    python scripts/train_eigv.py eigv_synthetic [--field value ...]      # a shipped config by name, or a path
    accelerate launch --multi_gpu --num_processes 2 scripts/train_eigv.py scripts/configs/eigv_synthetic.yaml
"""

from hf_vcr.flows import run_script
from hf_vcr.flows.eigv import main

if __name__ == "__main__":
    run_script(main)
