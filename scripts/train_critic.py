#!/usr/bin/env python
"""Train the LSKD critic: a thin entry point over :mod:`hf_vcr.flows.critic` (same as ``hf-vcr train critic``).

    python scripts/train_critic.py critic_synthetic [--field value ...]      # a shipped config by name, or a path
    accelerate launch --multi_gpu --num_processes 2 scripts/train_critic.py scripts/configs/critic_synthetic.yaml
"""

from hf_vcr.flows import run_script
from hf_vcr.flows.critic import main

if __name__ == "__main__":
    run_script(main)
