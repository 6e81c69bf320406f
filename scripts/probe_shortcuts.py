#!/usr/bin/env python
"""ARC's language-shortcut probes (section III) on trained VCR models; same as ``hf-vcr probe-shortcuts``.

    python scripts/probe_shortcuts.py --rationale_model runs/arc_synthetic/f_R --answer_model runs/arc_synthetic/f_A \
        --annotations_dir data/synthetic_vcr --images_dir data/synthetic_vcr/vcr1images --split val
"""

import sys

from hf_vcr.probes import probe_cli

if __name__ == "__main__":
    sys.exit(probe_cli())
