"""Start-up cost of ``hf-vcr evaluate vcr``: the wall time of scoring a 2-item leaderboard file, divided by that of
``python -c "import json"`` (an interpreter doing nothing), the two measured alternately, side by side.

``hf-vcr evaluate`` imports neither torch nor transformers (nor datasets/pyarrow), so what is left is numpy and the
scoring itself. Goal: a ratio of at most 5. Usage: ``python benchmarks/bench_cli_startup.py [--repeats N]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from hf_vcr.metrics.vcr import write_leaderboard_csv


def _item(k: int) -> dict:
    # the shape of an official VCR item (val_sample_from_VLE_README.jsonl), two of them
    return {
        "annot_id": f"val-{k}", "movie": "1054_Harry_Potter_and_the_prisoner_of_azkaban",
        "img_fn": "lsmdc_1054_Harry_Potter_and_the_prisoner_of_azkaban/1054_x@0.jpg",
        "metadata_fn": "lsmdc_1054_Harry_Potter_and_the_prisoner_of_azkaban/1054_x@0.json",
        "objects": ["person", "person", "car"], "question": ["Does", [0], "live", "here", "?"],
        "answer_choices": [["Yes", ",", [1], "does", "."], ["No", "."], ["Maybe", "."], [[2], "does", "."]],
        "rationale_choices": [["Because", [0], "waves", "."], ["It", "is", "dark", "."], ["No", "car", "."], ["The", [2], "."]],
        "answer_label": k % 4, "rationale_label": (k + 1) % 4,
    }


def _command() -> list[str]:
    exe = shutil.which("hf-vcr")
    return [exe] if exe else [sys.executable, "-m", "hf_vcr.cli"]


def _wall(cmd: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7, help="runs of each command (the median is reported)")
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="bench_cli_")
    try:
        import numpy as np

        items = [_item(1), _item(2)]
        annotations = os.path.join(work, "val.jsonl")
        with open(annotations, "w", encoding="utf-8") as f:
            f.writelines(json.dumps(it) + "\n" for it in items)
        predictions = os.path.join(work, "pred.csv")
        answers = np.full((2, 4), 0.25)
        write_leaderboard_csv(predictions, [it["annot_id"] for it in items], answers, np.full((2, 4, 4), 0.25))
        evaluate = _command() + ["evaluate", "vcr", "--predictions", predictions, "--annotations", annotations]
        baseline = [sys.executable, "-c", "import json"]
        _wall(evaluate), _wall(baseline)  # warm the file cache
        t_eval, t_base = [], []
        for _ in range(args.repeats):  # alternate, so both see the same load on the machine
            t_eval.append(_wall(evaluate))
            t_base.append(_wall(baseline))
        ours, base = statistics.median(t_eval), statistics.median(t_base)
        print(f"hf-vcr evaluate vcr (2 items): median {ours:.3f} s over {args.repeats} runs ({' '.join(evaluate[:1])})")
        print(f'python -c "import json": median {base:.3f} s')
        print(f"hf-vcr evaluate vcr / python -c 'import json' (goal <= 5): {ours:.3f} s / {base:.3f} s = {ours / base:.2f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
