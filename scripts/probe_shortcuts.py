#!/usr/bin/env python
"""ARC's language-shortcut probes (section III) on trained VCR models.

    python scripts/probe_shortcuts.py --rationale_model runs/arc_synthetic/f_R --answer_model runs/arc_synthetic/f_A \
        --annotations_dir data/synthetic_vcr --images_dir data/synthetic_vcr/vcr1images --split val \
        [--paraphrased my_paraphrased_val.jsonl] [--output probes.json]

Reports QA→R and A→R accuracy (Table I), the median answer-side attention ratio of eq. 1 (attention-based
models), and, with ``--paraphrased``, Q→A / QA→R on the original and paraphrased items (Table III).
Models are directories written by train_vcr.py (``<out>/qa2r``), train_arc.py or train_joint.py (``f_R``/``f_A``).
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))


def main(argv=None) -> int:
    import hf_vcr  # noqa: F401
    from hf_vcr.probes import probe_cli

    return probe_cli(argv)


if __name__ == "__main__":
    sys.exit(main())
